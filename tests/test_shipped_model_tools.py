"""The shipped model's factory in tools/shipped_model/: weight averaging of runs, and packaging (int8 weights, card).

tools/ is no package, so the scripts are loaded from their files, as tests/test_structure.py loads
tools/import_graph.py. The shipped model itself is fer_utils's (tests/test_pretrained.py).
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fer_utils
from fer_utils import CLASS_NAMES, loading, models, pretrained, runs

TOOLS = Path(__file__).resolve().parent.parent / "tools" / "shipped_model"


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(f"shipped_model_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


average, package, common = (_load_tool(name) for name in ("average", "package", "common"))


def _network(seed, img_size=32, head_units=16):
    return models.build_model("small_cnn", img_size=img_size, weights=None, head_units=head_units, augment=False,
                              seed=seed)


def _run_folder(path, seed, split, img_size=32, head_units=16, epochs=2):
    """A run folder of a small_cnn with its own random weights, as training writes one (`runs.save_run`)."""
    config = {
        "name": path.name, "backbone": "small_cnn", "img_size": img_size, "class_names": list(CLASS_NAMES),
        "data": {"path": "somewhere", "source": "argument", "fingerprint": str(seed), **split},
        "phases": [{"name": "end_to_end", "epochs_run": epochs}],
        "hyperparameters": {"val_fraction": 0.1, "seed": 42, "learning_rate": 0.003 / (seed + 1), "batch_size": 64,
                            "label_smoothing": 0.1, "head_units": head_units, "dropout": 0.2, "augment": False},
        "wall_time_s": {"end_to_end": 60.0 * (seed + 1)},
        "created": "2026-01-01T00:00:00+0000",
    }
    history = pd.DataFrame({"epoch": range(1, epochs + 1), "phase": "end_to_end", "val_accuracy": 0.5})
    val_metrics = {"accuracy": 0.5, "macro_f1": 0.4}
    return runs.save_run(path, _network(seed, img_size, head_units), config, history, val_metrics)


@pytest.fixture(scope="module")
def demo_split(demo_root):
    """The demo dataset's validation split, carved as training carves it, and its record."""
    return common.validation_split(demo_root, 0.1, 42, progress=False)


def test_average_weights_is_the_weighted_mean_array_by_array():
    first = [np.zeros((2, 2), "float32"), np.full(3, 4.0, "float32")]
    second = [np.ones((2, 2), "float32"), np.zeros(3, "float32")]
    mixed = average.average_weights([first, second], mix=[3, 1])
    np.testing.assert_allclose(mixed[0], 0.25)
    np.testing.assert_allclose(mixed[1], 3.0)
    assert mixed[0].dtype == np.float32
    np.testing.assert_allclose(average.average_weights([first, second])[1], 2.0)


@pytest.mark.parametrize("weights, mix, message", [
    ([[np.zeros(2)]] * 2, [1.0], "one mixing weight per model"),
    ([[np.zeros(2)]] * 2, [1.0, -0.5], "non-negative"),
    ([[np.zeros(2)]] * 2, [0.0, 0.0], "positive sum"),
    ([[np.zeros(2)]] * 2, [1.0, float("nan")], "non-negative"),
    ([[np.zeros(2)], [np.zeros(3)]], None, "same architecture"),
    ([[np.zeros(2)]], None, "at least two models"),
])
def test_weights_that_cannot_be_averaged_are_refused(weights, mix, message):
    with pytest.raises(ValueError, match=message):
        average.average_weights(weights, mix=mix)


def test_averaging_two_runs_writes_a_run_folder_of_the_mean_weights(demo_root, demo_split, tmp_path):
    val, record = demo_split
    first = _run_folder(tmp_path / "stage1", 0, record)
    second = _run_folder(tmp_path / "stage2", 1, record, epochs=3)

    out = average.average_runs([first, second], demo_root, tmp_path / "averaged", mix=[1, 3], progress=False)

    assert sorted(path.name for path in out.iterdir()) == sorted(
        [runs.MODEL_FILE, runs.CLASS_NAMES_FILE, runs.CONFIG_FILE, runs.HISTORY_FILE, runs.VAL_METRICS_FILE])
    averaged = loading.load_model(out)  # a valid run folder: fer_utils reads it back
    expected = [0.25 * a + 0.75 * b for a, b in zip(loading.load_model(first).model.get_weights(),
                                                     loading.load_model(second).model.get_weights())]
    for got, want in zip(averaged.model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    predicted = models.predict(averaged.model, val.images).argmax(axis=1)
    assert averaged.val_metrics["accuracy"] == pytest.approx(float((predicted == val.labels).mean()))
    assert averaged.val_metrics["num_images"] == len(val)
    assert set(averaged.val_metrics["recall_per_class"]) == set(CLASS_NAMES)
    config = averaged.config
    assert [(entry["run"], entry["share"], entry["epochs"], entry["minutes"]) for entry in config["averaged_from"]] == [
        (str(first), 0.25, 2, 1.0), (str(second), 0.75, 3, 2.0)]
    assert config["wall_time_s"] == {"total": 180.0} and config["name"] == "averaged"
    assert config["data"] == runs.data_provenance(runs.read_config(first)) and len(config["phases"]) == 2
    assert list(averaged.history["phase"]) == ["stage1/end_to_end"] * 2 + ["stage2/end_to_end"] * 3


def test_runs_that_cannot_be_averaged_fairly_are_refused_before_anything_is_written(demo_root, demo_split, tmp_path):
    _, record = demo_split
    first = _run_folder(tmp_path / "a", 0, record)
    cases = {
        "size": (_run_folder(tmp_path / "b_size", 1, record, img_size=48), "backbone, input size or classes"),
        "head": (_run_folder(tmp_path / "b_head", 1, record, head_units=8), "same architecture"),
        "split": (_run_folder(tmp_path / "b_split", 1, {**record, "validation": "val/ split folder"}),
                  "trained with validation 'val/ split folder'"),
        "data": (_run_folder(tmp_path / "b_data", 1, {**record, "train_size": record["train_size"] + 1}),
                 "trained with train_size"),
    }
    for name, (other, message) in cases.items():
        with pytest.raises(ValueError, match=message):
            average.average_runs([first, other], demo_root, tmp_path / f"out_{name}", progress=False)
        assert not (tmp_path / f"out_{name}").exists()
    with pytest.raises(ValueError, match="not an empty folder"):
        average.average_runs([first, first], demo_root, first, progress=False)


def test_the_averaging_script_reports_a_bad_mix_before_loading_anything(tmp_path, capsys):
    missing = str(tmp_path / "never-read")
    assert average.main([missing, missing, "--mix", "1", "-0.5", "--data", missing, "--out", missing]) == 2
    assert "non-negative" in capsys.readouterr().err


def test_int8_weights_round_trip_within_half_a_step_per_channel(tmp_path):
    network = _network(0)
    package.write_weights(tmp_path / "weights.npz", network.get_weights(), int8=True)
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


def test_packaged_weights_of_two_networks_load_as_one_model_averaging_them(tmp_path, monkeypatch):
    from fer_utils import gradcam

    monkeypatch.setattr(pretrained, "MODEL_DIR", tmp_path)
    networks = [_network(0), _network(1)]
    package.write_weights(tmp_path / pretrained.WEIGHTS_FILE, [a for n in networks for a in n.get_weights()], int8=True)
    arguments = {"backbone": "small_cnn", "img_size": 32, "head_units": 16, "augment": False}
    info = {"backbone": "small_cnn", "class_names": list(CLASS_NAMES), "training": {"minutes": 1.0},
            "members": [{"name": f"net{seed}", "build_arguments": {**arguments, "seed": seed}} for seed in (0, 1)]}
    (tmp_path / pretrained.DESCRIPTION_FILE).write_text(json.dumps(info))

    model = fer_utils.load_pretrained()
    assert model.count_params() == sum(network.count_params() for network in networks)
    faces = np.random.default_rng(0).integers(0, 256, (6, 48, 48, 1)).astype("float32")
    expected = np.mean([models.predict(network, faces) for network in networks], axis=0)
    np.testing.assert_allclose(models.predict(model, faces), expected, atol=0.02)
    heatmaps = gradcam.gradcam_heatmaps(model, faces)  # the mean of the members' maps, for the ensemble's class
    assert heatmaps.shape == (6, 48, 48) and 0 <= heatmaps.min() and heatmaps.max() <= 1
    run = loading.load_model("builtin")
    assert run.config["img_size"] == 32 and run.class_names == CLASS_NAMES


def test_packaging_two_runs_writes_the_model_the_card_and_figures_measured_as_stored(demo_root, demo_split, tmp_path,
                                                                                     monkeypatch, capsys):
    val, record = demo_split
    sources = [str(_run_folder(tmp_path / name, seed, record)) for seed, name in enumerate(("first", "second"))]
    monkeypatch.setattr(pretrained, "MODEL_DIR", tmp_path / "shipped")
    arguments = [*sources, "--test-data", str(demo_root), "--ensemble-note", "Chosen on validation."]
    for index in range(2):
        arguments += ["--command", f"python train.py run{index}", "--commit", f"{index}" * 40,
                      "--note", f"Note {index}."]

    assert package.main(arguments) == 0

    assert sorted(path.name for path in (tmp_path / "shipped").iterdir()) == sorted(
        [pretrained.DESCRIPTION_FILE, pretrained.WEIGHTS_FILE, pretrained.MODEL_CARD_FILE])
    info = pretrained.description()
    shipped = fer_utils.load_pretrained()
    predicted = models.predict(shipped, val.images).argmax(axis=1)
    assert info["val_metrics"]["accuracy"] == pytest.approx(float((predicted == val.labels).mean()))
    assert [member["source"] for member in info["members"]] == ["runs/first", "runs/second"]
    assert [entry["source"] for entry in info["lineage"]] == ["runs/first", "runs/second"]
    assert info["data"] == record and info["training"]["minutes"] == 3.0
    assert info["test_metrics"]["max_abs_probability_change_stored"] < 0.05
    card = (tmp_path / "shipped" / pretrained.MODEL_CARD_FILE).read_text()
    assert card == package.model_card(info)
    assert "python train.py run1" in card and "1" * 40 in card and "Chosen on validation." in card
    assert [member["training"]["note"] for member in info["members"]] == ["Note 0.", "Note 1."]
    assert f"**{100 * info['test_metrics']['plain']['accuracy']:.1f}%**" in card
    assert "limit 4 MiB" in capsys.readouterr().out


def test_packaging_refuses_members_of_other_splits_before_overwriting_anything(demo_root, demo_split, tmp_path,
                                                                               monkeypatch):
    _, record = demo_split
    first = _run_folder(tmp_path / "first", 0, record)
    other = _run_folder(tmp_path / "other", 1, {**record, "validation": "val/ split folder"})
    monkeypatch.setattr(pretrained, "MODEL_DIR", tmp_path / "shipped")
    arguments = [str(first), str(other), "--test-data", str(demo_root)] + ["--command", "c", "--commit", "x"] * 2
    with pytest.raises(SystemExit, match="different splits"):
        package.main(arguments)
    with pytest.raises(SystemExit):  # one --command for two run folders
        package.main(arguments[:-4])
    assert not (tmp_path / "shipped").exists()


def test_the_shipped_model_keeps_its_lineage_and_its_card_is_what_package_writes():
    info = pretrained.description()
    members = info["members"]
    # How it was made: each member's command and commit, member 1's averaged stages, every ancestor's split.
    assert [member["training"]["commit"][:7] for member in members] == ["deb3b4f", "4033a2f"]
    assert [stage["share"] for stage in members[0]["averaged_from"]] == [0.5, 0.0, 0.5]
    assert members[1]["training"]["init_from"] == "builtin at deb3b4f"
    assert [entry["source"] for entry in info["lineage"]] == [
        "builtin at deb3b4f", "runs/builtin_v1", "runs/builtin_v2", "runs/builtin_v3", "runs/member2"]
    assert all(entry["split"] == info["data"] for entry in info["lineage"])
    # package.py still writes this card from model.json; only the averaging tool's name has moved out of the CLI.
    stored = (pretrained.model_dir() / pretrained.MODEL_CARD_FILE).read_text()
    assert package.model_card(info) == stored.replace(" (`python -m fer_utils average`):", ":")
