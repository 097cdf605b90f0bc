"""Training: the recipe's helpers (callbacks, resume, phases, cached head, unfreeze, schedule, run
folder), the command-line recipe, and notebook 03 against it (same run folder, kill and rerun)."""

import json
import os
from pathlib import Path

import keras
import nbformat
import numpy as np
import pytest

from fer_utils import data, loading, models, recipe, training
from fer_utils.augmentation import AugmentationConfig
from helpers import write_notop_weights

ROOT = Path(__file__).resolve().parent.parent
NO_AUGMENTATION = AugmentationConfig(flip=False, rotation=0.0, zoom=0.0, translation=0.0, contrast=0.0)


def _split(count, seed=0):
    """Faces whose brightness encodes the class, so a tiny network can learn them in a few steps."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 7
    images = rng.integers(0, 40, (count, 48, 48, 1)) + labels[:, None, None, None] * 30
    return data.Split(images.astype("uint8"), labels.astype("int64"))


@pytest.fixture(scope="module")
def splits():
    return _split(42, seed=0), _split(21, seed=1)


def _small(**overrides):
    values = dict(epochs=3, batch_size=14, augmentation=NO_AUGMENTATION, patience=0)
    return recipe.default_settings("small_cnn", **{**values, **overrides})


def _crash_in(phase, after_epochs, monkeypatch):
    """Make `training.callbacks` of `phase` raise once `after_epochs` epochs are backed up (a kill)."""

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == after_epochs:
                raise RuntimeError("simulated crash")

    original = training.callbacks

    def crashing(run_dir, name, *args, **kwargs):
        return original(run_dir, name, *args, **kwargs) + ([Crash()] if name == phase else [])

    monkeypatch.setattr(training, "callbacks", crashing)


# ---------------------------------------------------------------------------------------------
# The helpers
# ---------------------------------------------------------------------------------------------
def test_cosine_schedule_warms_up_then_decays_to_zero():
    schedule = training.cosine_schedule(1e-3, epochs=10, steps_per_epoch=10)
    rate = [float(keras.ops.convert_to_numpy(schedule(step))) for step in (0, 5, 50, 100)]
    assert rate[0] == 0.0 and rate[1] == pytest.approx(1e-3)
    assert 0.4e-3 < rate[2] < 0.6e-3 and rate[3] == pytest.approx(0.0, abs=1e-9)


def test_unfreeze_top_keeps_batchnorm_frozen_and_needs_a_matching_prefix():
    model = models.build_model("resnet50", img_size=32, weights=None)
    backbone = model.get_layer("backbone")
    backbone.trainable = False
    assert models.trainable_summary(model)["trainable"] == model.get_layer("head_dense").count_params() + \
        model.get_layer("predictions").count_params()
    unfrozen = training.unfreeze_top(backbone, ("conv5",))
    trainable = [layer for layer in backbone.layers if layer.trainable and layer.weights]
    assert unfrozen == len(trainable) > 0
    assert all(layer.name.startswith("conv5") for layer in trainable)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)
    with pytest.raises(ValueError, match="nothing would be fine-tuned"):
        training.unfreeze_top(backbone, ("block9",))


def test_the_cached_head_trains_the_full_models_head(splits):
    train, val = splits
    model = models.build_model("vgg16", img_size=32, weights=None, head_batchnorm=True, augment=False)
    model.get_layer("backbone").trainable = False
    features = training.backbone_features(model, train.images)
    assert features.shape == (len(train), 512) and features.dtype == np.float32
    head = training.head_model(model)
    before = model.get_layer("head_dense").get_weights()[0].copy()
    head.compile(optimizer="adam", loss="categorical_crossentropy")
    head.fit(features, training.one_hot(train), epochs=1, verbose=0)
    after = model.get_layer("head_dense").get_weights()[0]
    assert not np.allclose(before, after)
    np.testing.assert_allclose(head.predict(features[:4], verbose=0), model.predict(train.images[:4], verbose=0),
                               rtol=1e-4, atol=1e-5)


def test_training_writes_a_complete_run_folder(splits, tmp_path):
    run_dir = recipe.train(splits, _small(), tmp_path / "run", progress=False)
    run = loading.load_model(run_dir)
    assert {path.name for path in run_dir.iterdir()} >= {"model.keras", "history.csv", "config.json",
                                                         "val_metrics.json", "backup"}
    assert list(run.history.columns) == list(training.HISTORY_COLUMNS)
    assert run.history["epoch"].tolist() == [1, 2, 3] and set(run.history["phase"]) == {"end_to_end"}
    assert run.history["loss"].iloc[-1] < run.history["loss"].iloc[0]
    config = run.config
    assert config["data"]["validation"] == "given by the caller" and config["data"]["train_size"] == 42
    assert [phase["name"] for phase in config["phases"]] == ["end_to_end"]
    assert config["hyperparameters"]["learning_rate"] == 3e-3 and config["weights"]["source"] == "none"
    assert json.loads((run_dir / "val_metrics.json").read_text())["num_images"] == 21
    # The saved model takes raw pixels and returns probabilities.
    probabilities = run.model.predict(np.zeros((2, 48, 48, 1), "float32"), verbose=0)
    assert probabilities.shape == (2, 7) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    # Rerunning the finished run changes nothing.
    stamp = (run_dir / "model.keras").stat().st_mtime_ns
    assert recipe.train(splits, _small(), run_dir, progress=False) == run_dir
    assert (run_dir / "model.keras").stat().st_mtime_ns == stamp


def test_an_interrupted_run_resumes_at_the_next_epoch_with_its_optimizer_state(splits, tmp_path, monkeypatch):
    settings = _small(epochs=4)
    reference = loading.load_model(recipe.train(splits, settings, tmp_path / "reference", progress=False))
    with monkeypatch.context() as patch:
        _crash_in("end_to_end", 2, patch)
        with pytest.raises(RuntimeError, match="simulated crash"):
            recipe.train(splits, settings, tmp_path / "run", progress=False)
    assert len(training.phase_history(tmp_path / "run", "end_to_end")) == 2
    run = loading.load_model(recipe.train(splits, settings, tmp_path / "run", progress=False))
    assert run.history["epoch"].tolist() == [1, 2, 3, 4]
    # BackupAndRestore restored the optimizer's step count, so the schedule went on where it stopped:
    # the rates after each epoch are those of the uninterrupted run.
    np.testing.assert_allclose(run.history["learning_rate"], reference.history["learning_rate"], rtol=1e-5)


def test_two_phase_run_killed_in_finetune_keeps_the_head_phase(splits, tmp_path, monkeypatch):
    settings = recipe.default_settings("vgg16", weights=None, img_size=32, epochs_head=3, epochs_finetune=3,
                                       batch_size=14, head_batchnorm=True, patience=0, augmentation=NO_AUGMENTATION)
    run_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        _crash_in("finetune", 1, patch)
        with pytest.raises(RuntimeError, match="simulated crash"):
            recipe.train(splits, settings, run_dir, progress=False)
    head_final = run_dir / "backup" / "head" / "final.npz"
    stamp, first_rows = head_final.stat().st_mtime_ns, training.phase_history(run_dir, "finetune")
    assert training.phase_done(run_dir, "head") and not training.phase_done(run_dir, "finetune")
    run = loading.load_model(recipe.train(splits, settings, run_dir, progress=False))
    assert head_final.stat().st_mtime_ns == stamp  # loaded, not retrained
    assert run.history["phase"].tolist() == ["head"] * 3 + ["finetune"] * 3
    assert run.history["epoch"].tolist() == [1, 2, 3, 4, 5, 6]
    assert run.history[run.history["phase"] == "finetune"].iloc[0]["val_loss"] == first_rows.iloc[0]["val_loss"]
    assert [phase["name"] for phase in run.config["phases"]] == ["head", "finetune"]


def test_finetuning_that_never_beats_the_head_phase_is_not_kept(splits, tmp_path):
    model = models.build_model("small_cnn", weights=None, augment=False)
    run_dir = tmp_path / "run"
    train, val = splits
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(train.images, training.one_hot(train), validation_data=(val.images, training.one_hot(val)), epochs=1,
              verbose=0, callbacks=training.callbacks(run_dir, "head", patience=0, progress=False))
    head = training.finish_phase(model, run_dir, "head")
    kept_weights = [weight.copy() for weight in model.get_weights()]
    model.fit(train.images, training.one_hot(train), validation_data=(val.images, training.one_hot(val)), epochs=2,
              verbose=0, callbacks=training.callbacks(run_dir, "finetune", patience=0, baseline=1.0, progress=False))
    record = training.finish_phase(model, run_dir, "finetune", fallback="head")
    assert head["epochs_run"] == 1 and record["epochs_run"] == 2 and record["kept"] is False
    for ours, kept in zip(model.get_weights(), kept_weights):
        np.testing.assert_array_equal(ours, kept)
    # A finished phase is loaded again, not retrained.
    assert training.phase_done(run_dir, "finetune")
    assert training.finish_phase(model, run_dir, "finetune") == record


def test_the_time_budget_stops_training_and_anneals_the_rate(splits, tmp_path, monkeypatch):
    class Clock:
        """Half a second per batch, whatever the machine (a JIT compile can take longer than a budget)."""

        now = 0.0

        def perf_counter(self):
            self.now += 0.5
            return self.now

    monkeypatch.setattr(recipe, "time", Clock())
    run = loading.load_model(recipe.train(splits, _small(epochs=500, max_minutes=0.25), tmp_path / "run", progress=False))
    assert 5 <= len(run.history) <= 11  # 15 s at 0.5 s per batch of 3 per epoch: 10 epochs and the last batch
    rates = run.history["learning_rate"]
    assert rates.max() <= 3e-3 and rates.is_monotonic_decreasing and rates.iloc[-1] < 0.01 * rates.max()  # annealed to ~0


def test_a_run_folder_refuses_other_settings_other_data_and_foreign_files(splits, tmp_path):
    run_dir = recipe.train(splits, _small(epochs=1), tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match=r"other settings \(batch_size\)"):
        recipe.train(splits, _small(epochs=1, batch_size=7), run_dir, progress=False)
    with pytest.raises(ValueError, match="other data"):
        recipe.train((_split(42, seed=5), _split(21, seed=6)), _small(epochs=1), run_dir, progress=False)
    assert recipe.train(splits, _small(epochs=1, batch_size=7), run_dir, progress=False, overwrite=True) == run_dir
    assert loading.load_model(run_dir).config["hyperparameters"]["batch_size"] == 7
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError):
        recipe.train(splits, _small(epochs=1), foreign, progress=False)
    assert [path.name for path in foreign.iterdir()] == ["notes.txt"]


def test_settings_are_checked_naming_the_flag():
    with pytest.raises(ValueError, match=r"--dropout"):
        recipe.default_settings("vgg16", dropout=1.5)
    with pytest.raises(ValueError, match=r"--learning-rate"):
        recipe.default_settings("small_cnn", learning_rate=float("nan"))
    with pytest.raises(ValueError, match="--epochs-head and --epochs-finetune"):
        recipe.default_settings("vgg16", epochs=3)
    with pytest.raises(ValueError, match="--epochs N"):
        recipe.default_settings("small_cnn", epochs=0)
    with pytest.raises(ValueError, match="Unknown training setting"):
        recipe.default_settings("vgg16", optimiser="sgd")
    assert recipe.default_settings("vgg16").class_weights == "none"
    assert recipe.default_settings("small_cnn", augmentation={"zoom": 0.2}).augmentation.rotation == 0.025


def test_check_learned_fails_a_smoke_run_that_learned_nothing():
    split = _split(70)

    class Result:
        y_pred = np.zeros(70, dtype=int)

    with pytest.raises(AssertionError, match="did not learn"):
        training.check_learned(split, Result(), smoke=True)
    Result.y_pred = split.labels.copy()
    assert "validation accuracy 1.000" in training.check_learned(split, Result(), smoke=True)


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------
def test_cli_train_end_to_end_on_demo_data(demo_root, tmp_path, capsys):
    from fer_utils import cli

    out = tmp_path / "run"
    status = cli.main([
        "train", "--backbone", "small_cnn", "--data", str(demo_root), "--out", str(out),
        "--epochs", "1", "--batch-size", "32", "--seed", "1", "--weight-decay", "0.02", "--quiet",
    ])
    assert status == 0
    assert str(out) in capsys.readouterr().out
    run = loading.load_model(out)
    assert run.config["backbone"] == "small_cnn" and run.config["hyperparameters"]["weight_decay"] == 0.02
    assert run.config["data"]["path"] == str(demo_root.resolve())
    assert run.config["data"]["train_size"] + run.config["data"]["val_size"] == len(
        data.load_dataset(demo_root, progress=False)["train"]
    )


def test_cli_train_reports_bad_options_and_missing_weights_in_one_line(demo_root, tmp_path, monkeypatch, capsys):
    from keras.src.utils import file_utils

    from fer_utils import cli

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure -- no network")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    status = cli.main(["train", "--backbone", "resnet50", "--data", str(demo_root), "--out", str(tmp_path / "run"),
                       "--img-size", "32", "--epochs-head", "1", "--quiet"])
    assert status == 2
    error = capsys.readouterr().err
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in error and "--weights none" in error
    assert cli.main(["train", "--backbone", "vgg16", "--data", str(demo_root), "--out", str(tmp_path / "run2"),
                     "--label-smoothing", "1.5"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: label_smoothing (--label-smoothing) must be in [0, 1), got 1.5."]
    assert not (tmp_path / "run2").exists()


def test_cli_train_imagenet_uses_local_notop_weights_offline(demo_root, tmp_path, monkeypatch, capsys):
    """The branch Kaggle users with Internet off take: --weights imagenet from an attached folder."""
    from keras.src.utils import file_utils

    from fer_utils import cli

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure -- no network")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    source = write_notop_weights(tmp_path / "weights", "vgg16")
    monkeypatch.setenv(models.WEIGHTS_DIR_VARIABLE, str(tmp_path / "weights"))
    status = cli.main([
        "train", "--backbone", "vgg16", "--weights", "imagenet", "--data", str(demo_root),
        "--out", str(tmp_path / "run"), "--img-size", "32", "--epochs-head", "1", "--epochs-finetune", "1", "--quiet",
    ])
    assert status == 0, capsys.readouterr().err
    run = loading.load_model(tmp_path / "run")
    assert run.config["weights"]["source"] == "imagenet"
    assert set(run.history["phase"]) == {"head", "finetune"}
    # The frozen part of the backbone still holds the file's weights after training.
    np.testing.assert_array_equal(
        run.model.get_layer("backbone").get_layer("block1_conv1").get_weights()[0],
        source.get_layer("block1_conv1").get_weights()[0],
    )


# ---------------------------------------------------------------------------------------------
# Notebook 03 and the command line: one recipe
# ---------------------------------------------------------------------------------------------
# Smoke settings (random VGG16, cached head) with a two-epoch phase 2 that can be killed in its middle.
TINY = dict(EPOCHS_FINETUNE=2, OVERWRITE=False)


def _execute_notebook_03(data_root, runs_dir, crash_finetune_after=None):
    """Run notebook 03 headless with TINY settings on `data_root`, optionally crashing phase 2 (a kill)."""
    from nbclient import NotebookClient

    notebook = nbformat.read(ROOT / "notebooks" / "03_train_vgg16.ipynb", as_version=4)
    code = [index for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    lines = [f"DATA = {str(data_root)!r}"] + [f"{name} = {value!r}" for name, value in TINY.items()]
    injected = [nbformat.v4.new_code_cell("\n".join(lines))]
    if crash_finetune_after:
        injected.append(nbformat.v4.new_code_cell(
            "import keras\nfrom fer_utils import training as _training\n_callbacks = _training.callbacks\n"
            "class _Crash(keras.callbacks.Callback):\n"
            "    def on_epoch_end(self, epoch, logs=None):\n"
            f"        if epoch + 1 == {crash_finetune_after}: raise RuntimeError('simulated crash')\n"
            "_training.callbacks = lambda run_dir, phase, **kw: _callbacks(run_dir, phase, **kw) + "
            "([_Crash()] if phase == 'finetune' else [])\n"
        ))
    setup = code[1]
    notebook.cells[setup + 1:setup + 1] = injected[1:]
    notebook.cells[code[0] + 1:code[0] + 1] = injected[:1]
    environment = {"FER_SMOKE": "1", "FER_RUNS_DIR": str(runs_dir)}
    saved = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    try:
        client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(ROOT / "notebooks")}})
        try:
            client.execute()
        except Exception as error:  # nbclient's CellExecutionError
            if "simulated crash" not in str(error):
                raise
            return None
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    return notebook


@pytest.mark.skipif(keras.config.backend() != "tensorflow",
                    reason="one backend is enough for the notebook run; the resume logic is tested above on each")
def test_notebook_03_resumes_after_a_kill_and_matches_the_command_line(tmp_path):
    from fer_utils.demo import make_demo_dataset

    # The demo data of `make demo` (100 faces per class on average): enough for the smoke check.
    demo_root = make_demo_dataset(tmp_path / "demo", per_class=100, seed=0)
    runs_dir = tmp_path / "runs"
    assert _execute_notebook_03(demo_root, runs_dir, crash_finetune_after=1) is None
    run_dir = runs_dir / "vgg16"
    head_final = run_dir / "backup" / "head" / "final.npz"
    stamp, first_rows = head_final.stat().st_mtime_ns, training.phase_history(run_dir, "finetune")
    assert len(first_rows) == 1 and not training.phase_done(run_dir, "finetune")

    # Rerun from the top in a fresh kernel, as after a Colab disconnect.
    assert _execute_notebook_03(demo_root, runs_dir) is not None
    assert head_final.stat().st_mtime_ns == stamp  # phase 1 kept, not retrained
    notebook_run = loading.load_model(run_dir)
    finetune = notebook_run.history[notebook_run.history["phase"] == "finetune"]
    assert finetune["epoch"].tolist() == [61, 62]  # resumed at the next epoch, after the 60 of the head phase
    assert finetune.iloc[0]["val_loss"] == first_rows.iloc[0]["val_loss"]

    # The command line with the same settings writes the same run folder and config.
    settings = recipe.default_settings("vgg16", weights=None, epochs_head=60, epochs_finetune=2,
                                       batch_size=32, head_batchnorm=True, dropout=0.0, label_smoothing=0.0,
                                       patience=0, val_fraction=0.2)
    cli_run = loading.load_model(recipe.train(demo_root, settings, tmp_path / "cli" / "vgg16", progress=False))
    assert sorted(path.name for path in cli_run.path.iterdir()) == sorted(path.name for path in run_dir.iterdir())
    assert set(cli_run.config) == set(notebook_run.config)
    assert cli_run.config["hyperparameters"] == notebook_run.config["hyperparameters"]
    for key in ("backbone", "weights", "img_size", "class_names", "n_params", "trainable_params"):
        assert cli_run.config[key] == notebook_run.config[key], key
    assert {key: value for key, value in cli_run.config["data"].items() if key != "source"} == \
        {key: value for key, value in notebook_run.config["data"].items() if key != "source"}
    assert [set(phase) for phase in cli_run.config["phases"]] == [set(phase) for phase in notebook_run.config["phases"]]
    assert list(cli_run.history.columns) == list(notebook_run.history.columns)


def test_a_full_disk_is_named_with_the_space_a_run_needs(splits, tmp_path, monkeypatch):
    import errno
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    with monkeypatch.context() as patch:
        patch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, 1000))
        with pytest.raises(OSError, match=r"has 0 MB free, but a small_cnn run needs about \d+ MB"):
            recipe.train(splits, _small(epochs=1), tmp_path / "run", progress=False)

    class DiskFull(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise OSError(errno.ENOSPC, "No space left on device")

    original = training.callbacks
    monkeypatch.setattr(training, "callbacks", lambda *args, **kwargs: original(*args, **kwargs) + [DiskFull()])
    with pytest.raises(OSError, match="is full while training writes its checkpoints; a run needs about .* resumes"):
        recipe.train(splits, _small(epochs=1), tmp_path / "run", progress=False)


def test_a_resumed_image_head_phase_does_not_shorten_fine_tuning(splits, tmp_path, monkeypatch):
    """BackupAndRestore sets the model's starting epoch; the next phase's fit must not inherit it."""
    settings = recipe.default_settings("vgg16", weights=None, img_size=32, epochs_head=3, epochs_finetune=3,
                                       head_mode="images", batch_size=14, head_batchnorm=True, patience=0,
                                       augmentation=NO_AUGMENTATION)
    with monkeypatch.context() as patch:
        _crash_in("head", 2, patch)
        with pytest.raises(RuntimeError, match="simulated crash"):
            recipe.train(splits, settings, tmp_path / "run", progress=False)
    run = loading.load_model(recipe.train(splits, settings, tmp_path / "run", progress=False))
    assert [phase["epochs_run"] for phase in run.config["phases"]] == [3, 3]


def test_a_kill_after_fit_but_before_the_phase_is_kept_does_not_train_it_again(splits, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(training, "finish_phase", lambda *args, **kwargs: (_ for _ in ()).throw(RuntimeError("killed")))
        with pytest.raises(RuntimeError, match="killed"):
            recipe.train(splits, _small(epochs=2), run_dir, progress=False)
    assert training.phase_done(run_dir, "end_to_end")
    history = (run_dir / "backup" / "end_to_end" / "history.csv").read_text()
    run = loading.load_model(recipe.train(splits, _small(epochs=2), run_dir, progress=False))
    assert (run_dir / "backup" / "end_to_end" / "history.csv").read_text() == history  # not trained again
    assert run.history["epoch"].tolist() == [1, 2]


def test_a_run_whose_saving_was_interrupted_is_saved_on_the_rerun(splits, tmp_path):
    run_dir = recipe.train(splits, _small(epochs=1), tmp_path / "run", progress=False)
    for name in ("config.json", "history.csv", "val_metrics.json"):
        (run_dir / name).unlink()
    recipe.train(splits, _small(epochs=1), run_dir, progress=False)
    assert all((run_dir / name).is_file() for name in ("config.json", "history.csv", "val_metrics.json"))
