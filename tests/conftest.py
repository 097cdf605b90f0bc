"""Shared pytest set-up: a private cache folder, a headless matplotlib, small generated datasets."""

import os

# These must be set before TensorFlow, Keras or matplotlib are imported by any test module.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Keep every test's decoded-array cache out of the user's home folder."""
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path_factory.mktemp("fer-cache")))


def write_image(path, array):
    """Write a uint8 array (H, W) or (H, W, 3) as an image file (format from the suffix)."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def make_split_folder(root, per_class=2, classes=None, suffix=".png"):
    """A labelled folder `root/<class>/*` whose images are filled with 10 * (class index + 1).

    The constant pixel value identifies the class an image came from, so tests can check that
    folders are mapped onto the canonical label order by name.
    """
    from fer_utils import CLASS_NAMES

    for index, name in enumerate(classes or CLASS_NAMES):
        label = CLASS_NAMES.index(name)
        for number in range(per_class):
            write_image(root / name / f"img_{number}{suffix}", np.full((48, 48), 10 * (label + 1), np.uint8))
    return root


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """A small demo dataset shared by tests that only read it."""
    from fer_utils.demo import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "fer", per_class=20, seed=0)
