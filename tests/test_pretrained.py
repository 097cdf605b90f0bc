"""The model that ships with the package: size, card, loading, and the CLI and API that use it.

How it was made and packaged (int8 weights, an ensemble of networks): tests/test_shipped_model_tools.py.
"""

import json

import numpy as np
import pytest

import fer_utils
from fer_utils import CLASS_NAMES, loading, pretrained

MIB = 2**20


def test_the_shipped_files_are_small_and_described():
    folder = pretrained.model_dir()
    assert (folder / pretrained.WEIGHTS_FILE).stat().st_size <= 4 * MIB
    info = json.loads((folder / pretrained.DESCRIPTION_FILE).read_text())
    assert info["class_names"] == list(CLASS_NAMES)
    plain = info["test_metrics"]["plain"]
    assert 0 < plain["accuracy_ci95"][0] <= plain["accuracy"] <= plain["accuracy_ci95"][1] < 1
    card = (folder / pretrained.MODEL_CARD_FILE).read_text()
    assert f"{100 * plain['accuracy']:.1f}%" in card and "Limits" in card
    for member in info.get("members") or [info]:  # each network: how it was trained, and the card says so
        for key in ("command", "commit", "minutes", "epochs"):
            assert member["training"][key]
        assert member["training"]["commit"] in card and member["training"]["command"] in card
        assert f"{100 * member['val_metrics']['accuracy']:.1f}%" in card
        for stage in member.get("averaged_from") or []:  # a weight average names every stage and its share
            assert f"{stage['name']}: {stage['epochs']} epochs" in card and f"share {stage['share']:.2f}" in card
    if "members" in info:
        assert f"{100 * info['val_metrics']['accuracy']:.1f}%" in card
        assert sum(member["n_params"] for member in info["members"]) == info["n_params"]


def test_load_pretrained_is_a_keras_model_on_raw_faces():
    model = fer_utils.load_pretrained()
    faces = np.random.default_rng(0).integers(0, 256, (4, 48, 48, 1)).astype("uint8")
    probabilities = np.asarray(model.predict(faces, verbose=0))
    assert probabilities.shape == (4, len(CLASS_NAMES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_builtin_is_a_model_name_everywhere():
    run = loading.load_model("builtin")
    assert run.path is None and run.class_names == CLASS_NAMES and run.name == "builtin"
    assert "PublicTest" in loading.describe(run)


def test_default_model_skips_demo_runs(tmp_path):
    run_dir = tmp_path / "demo_run"
    run_dir.mkdir()
    assert loading.default_model(tmp_path / "missing") == "builtin"
    assert loading.default_model(tmp_path) == "builtin"


def test_a_weights_file_that_does_not_fit_is_a_clear_error(tmp_path):
    model = fer_utils.load_pretrained()
    np.savez(tmp_path / "weights.npz", np.zeros(3))
    with pytest.raises(ValueError, match="do not belong together"):
        pretrained.read_weights(tmp_path / "weights.npz", model)


def test_cli_predict_needs_no_model(capsys):
    from fer_utils import cli, faces

    assert cli.main(["predict", str(faces.sample_photo_path())]) == 0
    printed = capsys.readouterr().out
    assert "the shipped model" in printed and "face 1:" in printed


def test_cli_evaluate_takes_builtin(demo_root, capsys):
    from fer_utils import cli

    assert cli.main(["evaluate", "--model", "builtin", "--data", str(demo_root), "--n-boot", "0"]) == 0
    assert "Accuracy" in capsys.readouterr().out


def test_cli_compare_takes_builtin(demo_root, tmp_path, capsys):
    from fer_utils import cli

    out = tmp_path / "comparison"
    assert cli.main(["compare", "builtin", "--data", str(demo_root), "--out", str(out), "--n-boot", "0",
                     "--no-figures"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["runs"] == ["builtin"] and "builtin" in summary["models"]

