"""Shared pytest set-up: a private cache folder, a headless matplotlib, small generated datasets."""

import os

# These must be set before TensorFlow, Keras or matplotlib are imported by any test module.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Keep every test's decoded-array cache out of the user's home folder."""
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path_factory.mktemp("fer-cache")))


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """A small demo dataset shared by tests that only read it."""
    from fer_utils.demo import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "fer", per_class=20, seed=0)
