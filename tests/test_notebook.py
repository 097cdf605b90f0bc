"""Tests for fer_utils.notebook: the notebooks' setup helpers."""

from pathlib import Path

import pytest

from fer_utils import models, notebook


def test_smoke_mode_and_runs_dir_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("FER_SMOKE", raising=False)
    monkeypatch.delenv("FER_RUNS_DIR", raising=False)
    assert not notebook.smoke_mode()
    assert notebook.default_runs_dir() == Path("runs")
    monkeypatch.setenv("FER_SMOKE", "1")
    monkeypatch.setenv("FER_RUNS_DIR", "/somewhere/runs")
    assert notebook.smoke_mode()
    assert notebook.default_runs_dir() == Path("/somewhere/runs")


def test_locate_data_demo_and_explicit_path(tmp_path):
    location = notebook.locate_data("demo")
    assert location.is_demo and (location.path / "train").is_dir()
    assert notebook.locate_data(location.path).source == "argument"


def test_resolve_weights_falls_back_loudly_when_imagenet_is_unavailable(monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise models.WeightsUnavailableError("the file vgg16_weights.h5 is not in ~/.keras/models")

    monkeypatch.setattr(models, "build_backbone", offline)
    assert notebook.resolve_weights("vgg16", "imagenet") is None
    shown = capsys.readouterr().out
    assert "ImageNet weights unavailable" in shown and "vgg16_weights.h5" in shown
    # Anything but "imagenet" is passed through untouched, without building anything.
    assert notebook.resolve_weights("vgg16", None) is None
    assert notebook.resolve_weights("vgg16", "local.h5") == "local.h5"


def test_resolve_weights_keeps_available_weights(monkeypatch):
    monkeypatch.setattr(models, "build_backbone", lambda *args, **kwargs: object())
    assert notebook.resolve_weights("resnet50", "imagenet") == "imagenet"
