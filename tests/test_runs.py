"""Tests for fer_utils.runs: atomic writes and run folders."""

import json

import numpy as np
import pandas as pd
import pytest

from contract_models import tiny_contract_model
from fer_utils import CLASS_NAMES, files, loading, runs


def test_atomic_write_json_replaces_whole_file(tmp_path):
    path = files.atomic_write_json(tmp_path / "sub" / "a.json", {"x": np.float32(1.5), "p": tmp_path})
    assert json.loads(path.read_text()) == {"x": 1.5, "p": str(tmp_path)}
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]  # no temporary file left behind


def test_save_and_load_run_round_trip(tmp_path):
    model = tiny_contract_model()
    history = pd.DataFrame({"epoch": [1, 2], "phase": ["head", "head"], "loss": [2.0, 1.5]})
    config = {"class_names": list(CLASS_NAMES), "name": "tiny", "backbone": "tiny"}
    run_dir = runs.save_run(tmp_path / "run", model, config, history, {"accuracy": 0.5})
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        [runs.MODEL_FILE, runs.CLASS_NAMES_FILE, runs.CONFIG_FILE, runs.HISTORY_FILE, runs.VAL_METRICS_FILE]
    )
    loaded = loading.load_model(run_dir)
    assert loaded.name == "tiny"
    assert loaded.class_names == CLASS_NAMES
    assert loaded.history["loss"].tolist() == [2.0, 1.5]
    assert loaded.val_metrics == {"accuracy": 0.5}
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 1)).astype("float32")
    np.testing.assert_allclose(loaded.model.predict(pixels, verbose=0), model.predict(pixels, verbose=0), atol=1e-6)
    assert runs.find_runs(tmp_path) == [run_dir]
    # A bare .keras file loads too, with the class names beside it.
    assert loading.load_model(run_dir / runs.MODEL_FILE).class_names == CLASS_NAMES


def test_save_run_without_history(tmp_path):
    run_dir = runs.save_run(tmp_path / "run", tiny_contract_model(), {"class_names": list(CLASS_NAMES)})
    assert loading.load_model(run_dir).history.empty


def test_load_run_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No run folder or model file"):
        loading.load_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no model.keras"):
        loading.load_model(tmp_path / "empty")
    with pytest.raises(ValueError, match="must contain 'class_names'"):
        runs.save_run(tmp_path / "x", tiny_contract_model(), {})


def test_best_run_uses_validation_metric(tmp_path):
    model = tiny_contract_model()
    for name, accuracy in (("a", 0.4), ("b", 0.6), ("c", 0.5)):
        runs.save_run(tmp_path / name, model, {"class_names": list(CLASS_NAMES)}, val_metrics={"accuracy": accuracy})
    assert runs.best_run(tmp_path) == tmp_path / "b"
    with pytest.raises(FileNotFoundError, match="No finished run"):
        runs.best_run(tmp_path / "nothing")


def test_load_model_takes_a_model_a_run_or_a_path_and_checks_class_names(tmp_path):
    model = tiny_contract_model(num_classes=3)
    with pytest.raises(ValueError, match="3 outputs but 7 classes"):
        loading.load_model(model)  # no class names: one output per FER2013 class is expected
    run = loading.load_model(model, class_names=["a", "b", "c"], name="mine")
    assert run.class_names == ("a", "b", "c") and run.name == "mine" and run.path is None
    assert loading.load_model(run) is run
    with pytest.raises(ValueError, match="3 outputs but 2 classes"):
        loading.load_model(run, class_names=["a", "b"])
    with pytest.raises(ValueError, match="Expected a Keras model"):
        loading.load_model(42)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not a .keras model file"):
        loading.load_model(tmp_path / "notes.txt")
