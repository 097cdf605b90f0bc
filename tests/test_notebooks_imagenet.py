"""Notebooks 03 and 04 with their full (non-smoke) settings and ImageNet weights, offline.

This is the branch every Kaggle and Colab user takes: `WEIGHTS = "imagenet"`, the default head,
dropout and label smoothing, `IMG_SIZE = 96` (the GPU size). CI has no network, so Keras's
"notop" files are written as randomly initialised stand-ins under their exact names into a
`WEIGHTS_DIR`, and the notebook must find and load them there rather than fall back to random
weights. Only the data (a small demo set) and the epochs (one per phase) are cut down.
"""

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from fer_utils import models
from helpers import write_notop_weights

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _with_parameters(notebook, values: dict):
    """Insert a cell assigning `values` after the `parameters` cell, as papermill does."""
    index = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
    return notebook


def _outputs_text(notebook) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.extend(str(value) for value in output.get("data", {}).values())
    return "\n".join(parts)


@pytest.mark.parametrize(("filename", "backbone"), [("03_train_vgg16.ipynb", "vgg16"), ("04_train_resnet50.ipynb", "resnet50")])
def test_training_notebook_runs_with_imagenet_weights_offline(filename, backbone, demo_root, tmp_path, monkeypatch):
    weights_dir = tmp_path / "keras-weights"
    write_notop_weights(weights_dir, backbone)
    runs_dir = tmp_path / "runs"
    monkeypatch.delenv("FER_SMOKE", raising=False)  # the notebook's own defaults, not the smoke ones
    monkeypatch.setenv("FER_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))  # an empty Keras cache
    monkeypatch.delenv(models.WEIGHTS_DIR_VARIABLE, raising=False)
    notebook = _with_parameters(
        nbformat.read(NOTEBOOKS / filename, as_version=4),
        {"DATA": str(demo_root), "WEIGHTS_DIR": str(weights_dir), "IMG_SIZE": 96, "EPOCHS_HEAD": 1, "EPOCHS_FINETUNE": 1},
    )
    NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    shown = _outputs_text(notebook)
    assert "ImageNet weights unavailable" not in shown and "weights: imagenet" in shown
    config = json.loads((runs_dir / backbone / "config.json").read_text())
    assert config["weights"]["source"] == "imagenet"
    assert config["weights"]["file"] == str(weights_dir / models.get_spec(backbone).weights_file)
    assert config["img_size"] == 96
    # The notebook's full defaults, untouched by smoke mode.
    hyperparameters = config["hyperparameters"]
    assert hyperparameters["dropout"] == 0.5 and hyperparameters["label_smoothing"] == 0.1
    assert hyperparameters["head_batchnorm"] is False
