"""Tests for fer_utils.runs: atomic writes and run folders."""

import json

import numpy as np
import pandas as pd
import pytest

from contract_models import tiny_contract_model
from fer_utils import CLASS_NAMES, files, runs


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
    loaded = runs.load_run(run_dir)
    assert loaded.name == "tiny"
    assert loaded.class_names == CLASS_NAMES
    assert loaded.history["loss"].tolist() == [2.0, 1.5]
    assert loaded.val_metrics == {"accuracy": 0.5}
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 1)).astype("float32")
    np.testing.assert_allclose(loaded.model.predict(pixels, verbose=0), model.predict(pixels, verbose=0), atol=1e-6)
    assert runs.find_runs(tmp_path) == [run_dir]
    # A bare .keras file loads too, with the class names beside it.
    assert runs.load_run(run_dir / runs.MODEL_FILE).class_names == CLASS_NAMES


def test_save_run_without_history(tmp_path):
    run_dir = runs.save_run(tmp_path / "run", tiny_contract_model(), {"class_names": list(CLASS_NAMES)})
    assert runs.load_run(run_dir).history.empty


def test_load_run_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No run folder or model file"):
        runs.load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no model.keras"):
        runs.load_run(tmp_path / "empty")
    with pytest.raises(ValueError, match="must contain 'class_names'"):
        runs.save_run(tmp_path / "x", tiny_contract_model(), {})


def test_best_run_uses_validation_metric(tmp_path):
    model = tiny_contract_model()
    for name, accuracy in (("a", 0.4), ("b", 0.6), ("c", 0.5)):
        runs.save_run(tmp_path / name, model, {"class_names": list(CLASS_NAMES)}, val_metrics={"accuracy": accuracy})
    assert runs.best_run(tmp_path) == tmp_path / "b"
    with pytest.raises(FileNotFoundError, match="No finished run"):
        runs.best_run(tmp_path / "nothing")
