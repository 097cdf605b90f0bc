"""Training: phases and frozen layers, cached-feature head, resuming, run folders, the CLI."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from fer_utils import callbacks, checkpoints, data, lineage, phases, runs, training
from fer_utils.augmentation import AugmentationConfig
from helpers import write_notop_weights


def _split(count, seed=0):
    """Faces whose brightness encodes the class, so a tiny network can learn them in a few steps."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 7
    images = rng.integers(0, 40, (count, 48, 48, 1)) + labels[:, None, None, None] * 30
    return data.Split(images.astype("uint8"), labels.astype("int64"))


@pytest.fixture(scope="module")
def splits():
    return _split(42, seed=0), _split(21, seed=1)


def _small_config(**overrides):
    values = dict(epochs_end_to_end=2, batch_size=14, augment=False, patience=0)
    values.update(overrides)
    return training.default_config("small_cnn", **values)


class _Recorder:
    """Collects the epochs each fit call begins, to see where a resumed run started."""

    def __new__(cls):
        import keras

        class Recorder(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.epochs = []
                self.optimizer_steps_at_start = None

            def on_train_begin(self, logs=None):
                self.optimizer_steps_at_start = int(np.asarray(self.model.optimizer.iterations))

            def on_epoch_begin(self, epoch, logs=None):
                self.epochs.append(epoch)

        return Recorder()


def _interrupt_after(epoch_count):
    import keras

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == epoch_count:
                raise KeyboardInterrupt("simulated kill")

    return Interrupt()


# ---------------------------------------------------------------------------------------------
# Which layers train in which phase
# ---------------------------------------------------------------------------------------------
def test_head_and_finetune_phases_train_the_right_layers():
    from fer_utils import models

    model = models.build_model("vgg16", img_size=32, weights=None, head_units=8)
    phases.set_phase_trainable(model, training.PHASE_HEAD)
    assert phases.trainable_layer_names(model) == ["head_dense", "predictions"]

    phases.set_phase_trainable(model, training.PHASE_FINETUNE, ("block5",))
    assert phases.trainable_layer_names(model) == [
        "backbone/block5_conv1", "backbone/block5_conv2", "backbone/block5_conv3", "head_dense", "predictions",
    ]
    with pytest.raises(ValueError, match="nothing would be fine-tuned"):
        phases.set_phase_trainable(model, training.PHASE_FINETUNE, ("no_such_block",))


def test_finetune_keeps_batchnorm_frozen_and_end_to_end_trains_everything():
    import keras

    from fer_utils import models

    model = models.build_model("resnet50", img_size=32, weights=None, head_units=8)
    phases.set_phase_trainable(model, training.PHASE_FINETUNE, ("conv5",))
    names = phases.trainable_layer_names(model)
    backbone_names = [name.split("/", 1)[1] for name in names if name.startswith("backbone/")]
    assert backbone_names and all(name.startswith("conv5") for name in backbone_names)
    assert not any(name.endswith("_bn") for name in backbone_names)
    assert all(
        not layer.trainable for layer in model.get_layer("backbone").layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )

    small = models.build_model("small_cnn", weights=None)
    phases.set_phase_trainable(small, training.PHASE_END_TO_END)
    assert models.trainable_summary(small)["trainable"] == sum(
        int(np.prod(w.shape)) for w in small.weights if "moving" not in w.path
    )


# ---------------------------------------------------------------------------------------------
# Learning, cached features, run folders
# ---------------------------------------------------------------------------------------------
REFERENCE_CONFIG = dict(epochs_end_to_end=4, learning_rate=3e-3, augment=True)


@pytest.fixture(scope="module")
def reference_run(splits, tmp_path_factory):
    """One finished small_cnn run shared by the tests that only read it."""
    train, val = splits
    return training.train(
        (train, val), _small_config(**REFERENCE_CONFIG), tmp_path_factory.mktemp("reference") / "run", progress=False
    )


def test_training_reduces_the_loss_and_writes_a_complete_run_folder(splits, reference_run):
    train, val = splits
    run_dir = reference_run

    for name in (runs.MODEL_FILE, runs.HISTORY_FILE, runs.CONFIG_FILE, runs.VAL_METRICS_FILE, runs.CLASS_NAMES_FILE):
        assert (run_dir / name).is_file()
    history = pd.read_csv(run_dir / runs.HISTORY_FILE)
    assert list(history.columns) == list(training.HISTORY_COLUMNS)
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert set(history["phase"]) == {training.PHASE_END_TO_END}
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]

    config_json = json.loads((run_dir / runs.CONFIG_FILE).read_text())
    for key in ("backbone", "weights", "img_size", "phases", "hyperparameters", "data",
                "class_names", "library_versions", "device", "wall_time_s"):
        assert key in config_json
    assert config_json["backbone"] == "small_cnn"
    assert config_json["weights"]["source"] == "none"
    assert config_json["class_names"] == list(train.class_names)
    assert config_json["wall_time_s"]["total"] > 0
    metrics = json.loads((run_dir / runs.VAL_METRICS_FILE).read_text())
    assert metrics["num_images"] == len(val) and 0.0 <= metrics["accuracy"] <= 1.0

    # The saved model predicts from raw pixels, like the in-memory one restored on load.
    run = runs.load_run(run_dir)
    assert run.class_names == tuple(train.class_names)
    probabilities = run.model.predict(val.images, verbose=0)
    assert np.mean(probabilities.argmax(axis=1) == val.labels) == pytest.approx(metrics["accuracy"])
    assert not (run_dir / checkpoints.BACKUP_DIR / training.PHASE_END_TO_END).exists()


def test_cached_feature_head_trains_the_full_models_head(splits):
    import keras

    from fer_utils import models

    train, _ = splits
    model = models.build_model("vgg16", img_size=32, weights=None, head_units=8, augment=False, seed=0)
    phases.set_phase_trainable(model, training.PHASE_HEAD)
    features = phases.compute_features(model, train.images)
    assert features.shape == (len(train), 512)

    head = phases.head_model(model)
    assert [w.shape for w in head.weights] == [w.shape for w in model.get_layer("head_dense").weights] + [
        w.shape for w in model.get_layer("predictions").weights
    ]
    before = np.array(model.get_layer("predictions").kernel)
    head.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    head.fit(features, keras.utils.to_categorical(train.labels, 7), epochs=2, batch_size=14, verbose=0)
    after = np.array(model.get_layer("predictions").kernel)
    assert not np.allclose(after, before)  # the full model's own head was trained

    # The full model now predicts exactly what head(features(pixels)) predicts.
    np.testing.assert_allclose(
        model.predict(train.images[:5], verbose=0), head.predict(features[:5], verbose=0), atol=1e-5
    )


def test_cpu_runs_are_reproducible(splits, reference_run, tmp_path):
    train, val = splits
    again = training.train((train, val), _small_config(**REFERENCE_CONFIG), tmp_path / "again", progress=False)
    columns = ["loss", "accuracy", "val_loss", "val_accuracy"]
    pd.testing.assert_frame_equal(
        pd.read_csv(reference_run / runs.HISTORY_FILE)[columns], pd.read_csv(again / runs.HISTORY_FILE)[columns]
    )


# ---------------------------------------------------------------------------------------------
# Resuming and the time budget
# ---------------------------------------------------------------------------------------------
def test_an_interrupted_run_resumes_where_it_stopped(splits, tmp_path):
    train, val = splits
    config = _small_config(epochs_end_to_end=4)
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        training.train((train, val), config, run_dir, progress=False, callbacks=[_interrupt_after(2)])
    assert not runs.is_run_dir(run_dir)
    state = json.loads((run_dir / checkpoints.BACKUP_DIR / training.PHASE_END_TO_END / checkpoints.STATE_FILE).read_text())
    assert state["epochs_done"] == 2
    history_before_kill = pd.DataFrame(state["history"])

    recorder = _Recorder()
    training.train((train, val), config, run_dir, progress=False, callbacks=[recorder])
    assert recorder.epochs == [2, 3]  # it did not start over
    steps_per_epoch = int(np.ceil(len(train) / config.batch_size))
    assert recorder.optimizer_steps_at_start == 2 * steps_per_epoch  # the optimizer state came back too
    history = pd.read_csv(run_dir / runs.HISTORY_FILE)
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(history["loss"].iloc[:2], history_before_kill["loss"])

    # Re-running a finished run does nothing; a different config in the same folder is refused.
    recorder = _Recorder()
    training.train((train, val), config, run_dir, progress=False, callbacks=[recorder])
    assert recorder.epochs == []
    with pytest.raises(ValueError, match="different settings"):
        training.train((train, val), _small_config(epochs_end_to_end=5), run_dir, progress=False)


def test_two_phase_run_killed_in_finetune_keeps_the_cached_head_phase(splits, tmp_path):
    train, val = splits
    config = training.default_config(
        "vgg16", weights=None, img_size=32, epochs_head=1, epochs_finetune=2, batch_size=21, head_units=8,
        augment=False, patience=0,
    )
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        # The head phase is 1 epoch, so the callback's second epoch end is the first finetune epoch.
        training.train((train, val), config, run_dir, progress=False, callbacks=[_InterruptOnCall(2)])
    recorder = _Recorder()
    training.train((train, val), config, run_dir, progress=False, callbacks=[recorder])
    assert recorder.epochs == [1]  # the head phase was kept; only the second finetune epoch was left
    history = pd.read_csv(run_dir / runs.HISTORY_FILE)
    assert history["phase"].tolist() == ["head", "finetune", "finetune"]
    assert history["epoch"].tolist() == [1, 2, 3]
    phases = json.loads((run_dir / runs.CONFIG_FILE).read_text())["phases"]
    assert [phase["name"] for phase in phases] == ["head", "finetune"]
    assert phases[0]["head_mode"] == "cached" and phases[0]["feature_extraction_s"] > 0
    assert phases[1]["trainable_params"] > phases[0]["trainable_params"]


def _InterruptOnCall(call_number):
    import keras

    class Interrupt(keras.callbacks.Callback):
        calls = 0

        def on_epoch_end(self, epoch, logs=None):
            Interrupt.calls += 1
            if Interrupt.calls == call_number:
                raise KeyboardInterrupt("simulated kill")

    return Interrupt()


def test_time_budget_stops_cleanly_and_anneals_the_learning_rate(splits, tmp_path):
    train, val = splits
    config = _small_config(epochs_end_to_end=50, max_minutes=0.05, batch_size=7)
    run_dir = training.train((train, val), config, tmp_path / "run", progress=False)
    phase = json.loads((run_dir / runs.CONFIG_FILE).read_text())["phases"][0]
    assert phase["out_of_time"] and phase["epochs_run"] < 50
    history = pd.read_csv(run_dir / runs.HISTORY_FILE)
    assert history["learning_rate"].iloc[-1] < 0.2 * config.learning_rate
    assert runs.is_run_dir(run_dir)


def test_learning_rate_schedule_shape():
    peak = 1.0
    assert callbacks.cosine_learning_rate(0.0, peak, 0.1) == 0.0
    assert callbacks.cosine_learning_rate(0.1, peak, 0.1) == pytest.approx(peak)
    assert callbacks.cosine_learning_rate(0.55, peak, 0.1) == pytest.approx(0.5 * peak)
    assert callbacks.cosine_learning_rate(1.0, peak, 0.1) == pytest.approx(0.0)


def test_init_from_starts_training_from_an_earlier_runs_weights(splits, reference_run, tmp_path):
    import keras

    class FirstWeights(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.weights = [np.array(weight) for weight in self.model.get_weights()]

    train, val = splits
    recorder = FirstWeights()
    config = _small_config(**{**REFERENCE_CONFIG, "epochs_end_to_end": 1}, init_from=str(reference_run))
    run_dir = training.train((train, val), config, tmp_path / "warm", progress=False, callbacks=[recorder])

    expected = runs.load_run(reference_run).model.get_weights()
    assert len(recorder.weights) == len(expected)
    assert all(np.array_equal(got, want) for got, want in zip(recorder.weights, expected))
    written = json.loads((run_dir / runs.CONFIG_FILE).read_text())
    assert written["hyperparameters"]["init_from"] == str(reference_run)
    reference_config = json.loads((reference_run / runs.CONFIG_FILE).read_text())
    assert reference_config["lineage"] == []
    assert written["lineage"] == [{"source": str(reference_run), "split": lineage.split_record(reference_config)}]

    # A start trained on the same images split another way has seen this run's validation images.
    resplit = tmp_path / "resplit"
    shutil.copytree(reference_run, resplit)
    resplit_config = {**reference_config, "data": {**reference_config["data"], "validation": "val/ split folder"}}
    (resplit / runs.CONFIG_FILE).write_text(json.dumps(resplit_config))
    with pytest.raises(ValueError, match="split another way"):
        training.train((train, val), _small_config(**REFERENCE_CONFIG, init_from=str(resplit)), tmp_path / "leaky",
                       progress=False)
    assert not (tmp_path / "leaky").exists()

    # The start model retrained in place between two attempts: the run does not resume from it.
    moving = tmp_path / "moving_start"
    shutil.copytree(reference_run, moving)
    config = _small_config(**{**REFERENCE_CONFIG, "epochs_end_to_end": 3}, init_from=str(moving))
    with pytest.raises(KeyboardInterrupt):
        training.train((train, val), config, tmp_path / "interrupted", progress=False, callbacks=[_interrupt_after(1)])
    start = runs.load_run(moving)
    start.model.set_weights([weight + 0.01 for weight in start.model.get_weights()])
    runs.save_run(moving, start.model, start.config, history=start.history, val_metrics=start.val_metrics)
    with pytest.raises(ValueError, match="other weights in init_from"):
        training.train((train, val), config, tmp_path / "interrupted", progress=False)

    with pytest.raises(ValueError, match="do not match the model being trained"):
        training.train((train, val), _small_config(**REFERENCE_CONFIG, init_from=str(reference_run), head_units=16),
                       tmp_path / "other_head", progress=False)
    with pytest.raises(FileNotFoundError, match="--init-from"):
        training.train((train, val), _small_config(init_from=str(tmp_path / "missing")), tmp_path / "missing_run",
                       progress=False)
    assert not (tmp_path / "missing_run").exists()


def test_inconsistent_configs_are_clear_errors():
    with pytest.raises(ValueError, match="--epochs"):
        training.validate_config(training.default_config("small_cnn", epochs_head=3))
    with pytest.raises(ValueError, match="--epochs-head"):
        training.validate_config(training.default_config("vgg16", epochs_end_to_end=3))
    with pytest.raises(ValueError, match="Unknown training option"):
        training.default_config("vgg16", learning_rte=1e-3)
    with pytest.raises(ValueError, match="head_mode"):
        training.validate_config(training.default_config("vgg16", head_mode="fast"))
    with pytest.raises(ValueError, match="optimizer"):
        training.validate_config(training.default_config("small_cnn", optimizer="rmsprop"))


def test_teachers_blend_their_flip_averaged_probabilities_into_the_targets(splits, reference_run, tmp_path,
                                                                            monkeypatch):
    from fer_utils import distillation, evaluation

    train, val = splits
    targets = []
    blend = distillation.blended_targets
    monkeypatch.setattr(distillation, "blended_targets", lambda *args: targets.append(blend(*args)) or targets[-1])
    config = _small_config(epochs_end_to_end=1, teachers=(str(reference_run), str(reference_run)), teacher_weight=0.7)
    run_dir = training.train((train, val), config, tmp_path / "student", progress=False)

    teacher = runs.load_run(reference_run).model
    expected = 0.7 * evaluation.predict_proba(teacher, train.images, tta=True) + 0.3 * np.eye(7)[train.labels]
    assert len(targets) == 1 and targets[0].shape == (len(train), 7)
    np.testing.assert_allclose(targets[0], expected, atol=1e-5)
    np.testing.assert_allclose(targets[0].sum(axis=1), 1.0, atol=1e-5)
    written = json.loads((run_dir / runs.CONFIG_FILE).read_text())
    recorded = written["hyperparameters"]
    assert recorded["teachers"] == [str(reference_run)] * 2 and recorded["teacher_weight"] == 0.7
    # The teachers' predictions count in the run's time; each teacher is in its lineage once.
    assert written["wall_time_s"]["teachers"] > 0
    assert written["wall_time_s"]["total"] == pytest.approx(sum(
        seconds for phase, seconds in written["wall_time_s"].items() if phase != "total"), abs=0.01)
    assert [entry["source"] for entry in written["lineage"]] == [str(reference_run)]
    assert training.TrainConfig.from_dict(recorded).teachers == (str(reference_run),) * 2

    # A teacher validated on another split could have trained on this run's validation images.
    with pytest.raises(ValueError, match="val_size 21, this run has 14"):
        training.train((train, _split(14, seed=2)), config, tmp_path / "other_split", progress=False)
    with pytest.raises(FileNotFoundError, match="--teachers"):
        training.train((train, val), _small_config(teachers=(str(tmp_path / "missing"),)), tmp_path / "missing_teacher",
                       progress=False)
    assert not (tmp_path / "other_split").exists() and not (tmp_path / "missing_teacher").exists()


def test_augmentation_option_changes_only_the_named_strengths(capsys):
    from fer_utils import cli

    args = cli.build_parser().parse_args([
        "train", "--backbone", "small_cnn", "--data", "d", "--out", "r", "--augmentation", "rotation=0.05, zoom=0.15",
    ])
    config = training.default_config("small_cnn", augmentation=args.augmentation)
    # small_cnn's milder defaults stay for what was not named.
    assert (config.augmentation.rotation, config.augmentation.zoom) == (0.05, 0.15)
    assert (config.augmentation.translation, config.augmentation.contrast, config.augmentation.flip) == (0.08, 0.0, True)
    assert training.default_config("vgg16", augmentation={"flip": False}).augmentation.zoom == 0.1
    for text, message in (("zoom=1.5", "zoom must be in [0, 1)"), ("spin=0.1", "NAME one of flip"),
                          ("flip=maybe", "NAME one of flip")):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args(["train", "--backbone", "small_cnn", "--data", "d", "--out", "r",
                                           "--augmentation", text])
        assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"augmentation.rotation must be in \[0, 1\)"):
        training.validate_config(training.default_config(
            "small_cnn", augmentation=AugmentationConfig(rotation=1.0)))


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
    printed = capsys.readouterr().out
    assert str(out) in printed
    run = runs.load_run(out)
    assert run.config["backbone"] == "small_cnn"
    assert run.config["hyperparameters"]["weight_decay"] == 0.02
    assert run.config["data"]["path"] == str(demo_root.resolve())
    assert run.config["data"]["train_size"] + run.config["data"]["val_size"] == len(
        data.load_dataset(demo_root, progress=False)["train"]
    )
    assert run.model.predict(np.zeros((1, 48, 48, 1), "uint8"), verbose=0).shape == (1, 7)


def test_cli_train_reports_missing_imagenet_weights_in_one_line(demo_root, tmp_path, monkeypatch, capsys):
    from keras.src.utils import file_utils

    from fer_utils import cli

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure -- no network")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    status = cli.main([
        "train", "--backbone", "resnet50", "--data", str(demo_root), "--out", str(tmp_path / "run"),
        "--img-size", "32", "--epochs-head", "1", "--quiet",
    ])
    assert status == 2
    error = capsys.readouterr().err
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in error and "--weights none" in error


def test_cli_train_imagenet_uses_local_notop_weights_offline(demo_root, tmp_path, monkeypatch, capsys):
    """The branch Kaggle users with Internet off take: --weights imagenet from an attached folder."""
    from keras.src.utils import file_utils

    from fer_utils import cli, models

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
    run = runs.load_run(tmp_path / "run")
    assert run.config["weights"]["source"] == "imagenet"
    assert set(run.history["phase"]) == {"head", "finetune"}
    # The frozen part of the backbone still holds the file's weights after training.
    np.testing.assert_array_equal(
        run.model.get_layer("backbone").get_layer("block1_conv1").get_weights()[0],
        source.get_layer("block1_conv1").get_weights()[0],
    )


# ---------------------------------------------------------------------------------------------
# The environment recorded in config.json
# ---------------------------------------------------------------------------------------------
def test_platform_device_and_versions(monkeypatch):
    from fer_utils import environment

    for name in ("COLAB_RELEASE_TAG", "COLAB_GPU", "KAGGLE_KERNEL_RUN_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    assert environment.platform_name() == "kaggle"
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-1")
    assert environment.platform_name() == "colab"

    import keras

    summary = environment.device_summary()
    assert summary["backend"] == keras.config.backend()
    if not summary["gpus"]:
        assert summary["device"].startswith("CPU (")
    versions = environment.library_versions()
    assert versions["keras"] and versions[keras.config.backend()] and versions["python"]


def test_best_phase_keeps_the_best_validation_score_across_phases():
    from fer_utils import training

    records = [
        {"name": "head", "best_val_accuracy": 0.40},
        {"name": "finetune", "best_val_accuracy": 0.35},
    ]
    assert training._best_phase(records, "val_accuracy") == "head"
    records[1]["best_val_accuracy"] = 0.40
    assert training._best_phase(records, "val_accuracy") == "finetune"  # ties go to the later phase
    losses = [{"name": "head", "best_val_loss": 1.0}, {"name": "finetune", "best_val_loss": 0.9}]
    assert training._best_phase(losses, "val_loss") == "finetune"


# ---------------------------------------------------------------------------------------------
# One training function, one provenance shape
# ---------------------------------------------------------------------------------------------
PROVENANCE_KEYS = {"path", "source", "fingerprint", "validation", "train_size", "val_size", "train_class_counts"}


def test_cli_and_notebook_paths_record_the_same_provenance_shape(demo_root, tmp_path):
    """The CLI passes a path, the notebooks pass the splits they showed: config.json's `data` is one shape."""
    from fer_utils import cli, training_notebook
    from fer_utils.data import DatasetLocation

    cli_run = tmp_path / "cli"
    assert cli.main(["train", "--backbone", "small_cnn", "--data", str(demo_root), "--out", str(cli_run),
                     "--epochs", "1", "--batch-size", "32", "--quiet"]) == 0

    class Context:
        data = DatasetLocation(demo_root, "demo")
        runs_dir = tmp_path / "notebook"

    config = training.default_config("small_cnn", epochs_end_to_end=1, batch_size=32)
    training_data = training.training_splits(Context.data, val_fraction=config.val_fraction, seed=config.seed)
    notebook_run = training_notebook.train(Context, training_data, config)

    recorded = [runs.read_config(cli_run)["data"], notebook_run.config["data"]]
    for provenance in recorded:
        assert set(provenance) == PROVENANCE_KEYS
        assert provenance["path"] == str(demo_root.resolve())
        assert provenance["validation"] == "10% of train, stratified, seed 42"
        assert sum(provenance["train_class_counts"]) == provenance["train_size"]
    assert recorded[0]["source"] == "argument" and recorded[1]["source"] == "demo"
    # Same data, same split policy: the same images, the same fingerprint and sizes.
    assert {key: recorded[0][key] for key in PROVENANCE_KEYS - {"source"}} == {
        key: recorded[1][key] for key in PROVENANCE_KEYS - {"source"}
    }
    assert not any(key in runs.read_config(cli_run) for key in ("dataset", "val_source", "dataset_fingerprint"))


def test_in_memory_splits_are_recorded_as_such(splits):
    provenance = training.training_splits(splits).provenance
    assert set(provenance) == PROVENANCE_KEYS
    assert provenance["path"] is None and provenance["validation"] == "given by the caller"
    assert provenance["fingerprint"].startswith("arrays-")


def test_class_weights_are_off_by_default_for_every_backbone():
    from fer_utils import models

    for backbone in models.BACKBONES:
        assert training.default_config(backbone).class_weights == "none"
    assert training.default_config("small_cnn", class_weights="balanced").class_weights == "balanced"
    with pytest.raises(ValueError, match="class_weights"):
        training.validate_config(training.default_config("small_cnn", class_weights="inverse"))


def test_every_config_option_reaches_the_cli(demo_root):
    """A TrainConfig field with a flag is a `train` option with its help text; its value lands in the config."""
    from fer_utils import cli
    from fer_utils.training_config import cli_options

    options = cli_options()
    assert {field.name for field in options} >= {"class_weights", "learning_rate", "epochs_end_to_end", "augment"}
    train_parser = cli.build_parser()._subparsers._group_actions[0].choices["train"]
    help_text = train_parser.format_help()
    for field in options:
        assert field.metadata["flag"] in help_text
    args = cli.build_parser().parse_args([
        "train", "--backbone", "small_cnn", "--data", str(demo_root), "--out", "run",
        "--class-weights", "balanced", "--no-augment", "--finetune-layers", "a, b", "--weights", "none",
    ])
    assert (args.class_weights, args.augment, args.finetune_prefixes, args.weights) == ("balanced", False, ("a", "b"), None)
