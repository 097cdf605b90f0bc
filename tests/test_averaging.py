"""Weight averaging of runs (`fer_utils.averaging`, `python -m fer_utils average`)."""

import json

import numpy as np
import pandas as pd
import pytest

from fer_utils import averaging, cli, data, models, pretrained, runs, training


def _run_folder(path, seed, img_size=32, head_units=16, phase_rows=2, validation="given by the caller",
                **provenance):
    """A run folder holding a small_cnn with its own random weights, as `training.train` would write it."""
    model = models.build_model("small_cnn", img_size=img_size, weights=None, head_units=head_units, augment=False,
                               seed=seed)
    provenance = {"validation": validation, **provenance}
    config = {
        "name": path.name, "backbone": "small_cnn", "img_size": img_size, "class_names": list(data.CLASS_NAMES),
        "data": provenance, "phases": [{"name": "end_to_end", "epochs_run": phase_rows}],
        "hyperparameters": {"val_fraction": 0.1, "seed": 42}, "wall_time_s": {"total": 100.0 * (seed + 1)},
    }
    history = pd.DataFrame({"epoch": range(1, phase_rows + 1), "phase": "end_to_end", "val_accuracy": 0.5})
    runs.claim_run_folder(path)
    return runs.save_run(path, model, config, history=history, val_metrics={"accuracy": 0.5})


def _splits(count=28, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 7
    images = rng.integers(0, 256, (count, 48, 48, 1)).astype("uint8")
    return data.Split(images, labels.astype("int64"))


def test_average_weights_is_the_weighted_mean_array_by_array():
    first = [np.zeros((2, 2), "float32"), np.full(3, 4.0, "float32")]
    second = [np.ones((2, 2), "float32"), np.zeros(3, "float32")]
    averaged = averaging.average_weights([first, second], mix=[3, 1])
    np.testing.assert_allclose(averaged[0], 0.25)
    np.testing.assert_allclose(averaged[1], 3.0)
    assert averaged[0].dtype == np.float32
    np.testing.assert_allclose(averaging.average_weights([first, second])[1], 2.0)


@pytest.mark.parametrize("mix, message", [
    ([1.0], "one mixing weight per model"),
    ([1.0, -0.5], "non-negative"),
    ([0.0, 0.0], "positive sum"),
    ([1.0, float("nan")], "non-negative"),
])
def test_a_bad_mix_is_refused_with_what_to_give(mix, message):
    weights = [np.zeros(2)]
    with pytest.raises(ValueError, match=message):
        averaging.average_weights([weights, weights], mix=mix)


def test_models_of_other_shapes_or_a_single_model_are_refused():
    with pytest.raises(ValueError, match="same architecture"):
        averaging.average_weights([[np.zeros(2)], [np.zeros(3)]])
    with pytest.raises(ValueError, match="at least two models"):
        averaging.average_weights([[np.zeros(2)]])


def test_average_runs_writes_a_scored_run_folder_of_the_mean_weights(tmp_path):
    first, second = _run_folder(tmp_path / "stage1", seed=0), _run_folder(tmp_path / "stage2", seed=1, phase_rows=3)
    train, val = _splits(), _splits(14, seed=1)

    out = averaging.average_runs([first, second], (train, val), tmp_path / "averaged", mix=[1, 3], progress=False)

    averaged = runs.load_run(out)
    expected = [0.25 * a + 0.75 * b for a, b in zip(runs.load_run(first).model.get_weights(),
                                                     runs.load_run(second).model.get_weights())]
    for got, want in zip(averaged.model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    predicted = models.predict(averaged.model, val.images).argmax(axis=1)
    assert averaged.val_metrics["accuracy"] == pytest.approx(float((predicted == val.labels).mean()))
    assert averaged.val_metrics["num_images"] == len(val)
    config = json.loads((out / runs.CONFIG_FILE).read_text())
    assert [(entry["run"], entry["share"]) for entry in config["averaged_from"]] == [(str(first), 0.25),
                                                                                   (str(second), 0.75)]
    assert config["wall_time_s"]["total"] == 300.0 and config["selected_phase"] == "averaged"
    assert [entry["source"] for entry in config["lineage"]] == [str(first), str(second)]
    assert list(averaged.history["phase"]) == ["stage1/end_to_end"] * 2 + ["stage2/end_to_end"] * 3


def test_runs_that_cannot_be_averaged_fairly_are_refused_before_anything_is_written(tmp_path):
    first = _run_folder(tmp_path / "a", seed=0)
    splits = (_splits(), _splits(14, seed=1))
    cases = {
        "b_size": (_run_folder(tmp_path / "b_size", seed=1, img_size=48), "img_size"),
        "b_head": (_run_folder(tmp_path / "b_head", seed=1, head_units=8), "weight shapes"),
        "b_split": (_run_folder(tmp_path / "b_split", seed=1, validation="val/ split folder"), "different splits"),
    }
    for name, (other, message) in cases.items():
        with pytest.raises(ValueError, match=message):
            averaging.average_runs([first, other], splits, tmp_path / f"out_{name}", progress=False)
        assert not (tmp_path / f"out_{name}").exists()
    with pytest.raises(runs.RunFolderError, match="already holds a run"):
        averaging.average_runs([first, first], splits, first, progress=False)


def test_the_cli_averages_runs_on_their_dataset_and_refuses_other_data(demo_root, tmp_path, capsys):
    splits = training.training_splits(demo_root, 0.1, 42, progress=False)
    counts = {key: splits.provenance[key] for key in ("validation", "train_size", "val_size", "train_class_counts")}
    # Another fingerprint (the same files copied again get new file times) but the same images: accepted.
    first = _run_folder(tmp_path / "a", seed=0, **counts, fingerprint="0" * 24)
    second = _run_folder(tmp_path / "b", seed=1, **counts)

    assert cli.main(["average", str(first), str(second), "--data", str(demo_root), "--out", str(tmp_path / "avg")]) == 0
    printed = capsys.readouterr().out
    assert "0.500 x" in printed and "Averaged model: val accuracy" in printed
    assert runs.load_run(tmp_path / "avg").val_metrics["num_images"] == len(splits.val)

    stranger = _run_folder(tmp_path / "c", seed=1, **{**counts, "train_size": counts["train_size"] + 1})
    assert cli.main(["average", str(first), str(stranger), "--data", str(demo_root), "--out",
                     str(tmp_path / "avg2")]) == 2
    assert "not the dataset the runs were trained on" in capsys.readouterr().err
    assert not (tmp_path / "avg2").exists()


def test_the_cli_refuses_a_negative_share_before_loading_anything(tmp_path, capsys):
    missing = tmp_path / "never-read"
    assert cli.main(["average", str(missing), str(missing), "--mix", "1", "-0.5", "--data", str(missing),
                     "--out", str(tmp_path / "avg")]) == 2
    assert "--mix must be at least 0, got -0.5" in capsys.readouterr().err


def _shipped_model_folder(folder, seed, validation="given by the caller", **data_fields):
    """A stand-in for the package's shipped model (model.json + float16 weights.npz) in `folder`."""
    model = models.build_model("small_cnn", img_size=32, weights=None, head_units=16, augment=False, seed=seed)
    folder.mkdir()
    pretrained.write_weights(folder / pretrained.WEIGHTS_FILE, model)
    info = {
        "backbone": "small_cnn", "class_names": list(data.CLASS_NAMES),
        "build_arguments": {"backbone": "small_cnn", "img_size": 32, "head_units": 16, "augment": False, "seed": seed},
        "hyperparameters": {"learning_rate": 0.003, "val_fraction": 0.1, "seed": 42},
        "training": {"epochs": 5, "minutes": 2.0},
        "data": {"validation": validation, **data_fields},
        "val_metrics": {"accuracy": 0.6},
        "test_metrics": {"plain": {"accuracy": 0.6}},
        "averaged_from": [{"run": "runs/stage1", "name": "stage1", "share": 1.0}],
    }
    (folder / pretrained.DESCRIPTION_FILE).write_text(json.dumps(info))
    return pretrained.load_pretrained()


def test_the_shipped_model_averages_with_a_run_and_is_checked_like_one(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "MODEL_DIR", tmp_path / "shipped")
    shipped = _shipped_model_folder(tmp_path / "shipped", seed=3)
    continued = _run_folder(tmp_path / "continued", seed=0)
    splits = (_splits(), _splits(14, seed=1))

    out = averaging.average_runs(["builtin", continued], splits, tmp_path / "averaged", mix=[1, 3], progress=False)

    expected = [0.25 * a + 0.75 * b for a, b in zip(shipped.get_weights(), runs.load_run(continued).model.get_weights())]
    for got, want in zip(runs.load_run(out).model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    config = json.loads((out / runs.CONFIG_FILE).read_text())
    entry = config["averaged_from"][0]
    assert (entry["run"], entry["share"], entry["epochs"], entry["minutes"]) == ("builtin", 0.25, 5, 2.0)
    assert entry["averaged_from"] == [{"run": "runs/stage1", "name": "stage1", "share": 1.0}]
    # The new run is described by the run folder's config, not by the shipped model's card figures.
    assert "test_metrics" not in config and config["hyperparameters"] == {"val_fraction": 0.1, "seed": 42}
    assert config["wall_time_s"]["total"] == pytest.approx(120.0 + 100.0)
    assert list(pd.read_csv(out / runs.HISTORY_FILE)["phase"].unique()) == ["continued/end_to_end"]


def test_the_shipped_model_from_another_split_or_alone_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "MODEL_DIR", tmp_path / "shipped")
    _shipped_model_folder(tmp_path / "shipped", seed=3, validation="val/ split folder")
    continued = _run_folder(tmp_path / "continued", seed=0)
    splits = (_splits(), _splits(14, seed=1))
    with pytest.raises(ValueError, match="different splits"):
        averaging.average_runs([continued, "builtin"], splits, tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="at least one run folder"):
        averaging.average_runs(["builtin", "builtin"], splits, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
