"""The model that ships with the package: size, card, loading, and the CLI and API that use it."""

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


def _small_network(seed):
    from fer_utils import models

    return models.build_model("small_cnn", img_size=32, weights=None, head_units=16, augment=False, seed=seed)


def _shipped_ensemble(folder, seeds=(0, 1)):
    """A stand-in for a shipped ensemble (model.json with `members` + int8 weights.npz); returns its networks."""
    networks = [_small_network(seed) for seed in seeds]
    folder.mkdir()

    class Joined:
        @staticmethod
        def get_weights():
            return [array for network in networks for array in network.get_weights()]

    pretrained.write_weights(folder / pretrained.WEIGHTS_FILE, Joined(), int8=True)
    arguments = [{"backbone": "small_cnn", "img_size": 32, "head_units": 16, "augment": False, "seed": seed}
                 for seed in seeds]
    info = {"backbone": "small_cnn", "class_names": list(CLASS_NAMES),
            "members": [{"name": f"net{seed}", "build_arguments": argument} for seed, argument in zip(seeds, arguments)],
            "data": {}, "lineage": [], "training": {"minutes": 1.0}}
    (folder / pretrained.DESCRIPTION_FILE).write_text(json.dumps(info))
    return networks


def test_int8_weights_round_trip_within_half_a_step_per_channel(tmp_path):
    network = _small_network(0)
    pretrained.write_weights(tmp_path / "weights.npz", network, int8=True)
    with np.load(tmp_path / "weights.npz") as stored:
        quantised = [name for name in stored.files if name.startswith("scale_")]
        assert quantised and all(stored[name.replace("scale_", "arr_")].dtype == np.int8 for name in quantised)
    restored = pretrained.read_weights(tmp_path / "weights.npz", network)
    for index, (original, back) in enumerate(zip(network.get_weights(), restored)):
        assert back.dtype == original.dtype and back.shape == original.shape
        if f"scale_{index}" in quantised:
            step = np.abs(original).max(axis=tuple(range(original.ndim - 1))) / 127
            assert np.all(np.abs(original - back) <= step / 2 + 1e-7)
        else:  # small arrays keep float16 precision
            np.testing.assert_allclose(back, original, rtol=1e-3, atol=1e-4)


def test_a_shipped_ensemble_is_one_model_averaging_its_members(tmp_path, monkeypatch):
    from fer_utils import gradcam

    monkeypatch.setattr(pretrained, "MODEL_DIR", tmp_path / "shipped")
    networks = _shipped_ensemble(tmp_path / "shipped")
    model = fer_utils.load_pretrained()
    assert pretrained.is_ensemble() and model.count_params() == sum(network.count_params() for network in networks)
    faces = np.random.default_rng(0).integers(0, 256, (6, 48, 48, 1)).astype("float32")
    expected = np.mean([network.predict(faces, verbose=0) for network in networks], axis=0)
    np.testing.assert_allclose(model.predict(faces, verbose=0), expected, atol=0.02)
    heatmaps = gradcam.gradcam_heatmaps(model, faces)  # the mean of the members' heatmaps, for the ensemble's class
    assert heatmaps.shape == (6, 48, 48) and 0 <= heatmaps.min() and heatmaps.max() <= 1
    run = loading.load_model("builtin")
    assert run.config["img_size"] == 32 and run.class_names == CLASS_NAMES


def test_a_shipped_ensemble_is_refused_where_one_network_is_needed(tmp_path, monkeypatch):
    from fer_utils import averaging, training_config

    monkeypatch.setattr(pretrained, "MODEL_DIR", tmp_path / "shipped")
    _shipped_ensemble(tmp_path / "shipped")
    config = training_config.default_config("small_cnn", init_from="builtin")
    with pytest.raises(ValueError, match=r"ensemble of 2 networks .* the start of a warm restart \(--init-from\)"):
        training_config.validate_config(config)
    with pytest.raises(ValueError, match="a stage of a weight average: that needs one network's weights"):
        averaging.average_runs(["builtin", tmp_path / "run"], None, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
