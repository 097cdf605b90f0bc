"""The helpers of the training recipe that notebooks 03 and 04 show as Keras cells (what a reader would
otherwise copy and paste); `fer_utils.recipe.train` calls them in the notebooks' order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from fer_utils import data as data_module
from fer_utils import environment, files, loading, models, progress, runs
from fer_utils.augmentation import AugmentationConfig

PHASE_HEAD, PHASE_FINETUNE, PHASE_END_TO_END = "head", "finetune", "end_to_end"
MONITOR = "val_accuracy"
WARMUP_FRACTION = 0.05  # of a scheduled phase's steps, warming the rate up before its cosine decay
HISTORY_COLUMNS = ("epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")
BACKUP_DIR = "backup"
RUN_STATE = "run.json"


@dataclasses.dataclass
class Settings:
    """The settings of a run, as config.json records them (`default_settings` fills in per backbone)."""

    backbone: str = "vgg16"
    weights: str | None = "imagenet"  # "imagenet", None (random) or a weights file
    img_size: int | None = None  # None: 48 px on a CPU, the backbone's GPU size on a GPU
    epochs_head: int = 10
    epochs_finetune: int = 10
    epochs: int = 0  # small_cnn's single end-to-end phase
    batch_size: int = 64
    learning_rate: float = 1e-3
    finetune_learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    dropout: float = 0.5
    head_batchnorm: bool = False
    head_mode: str = "cached"  # "cached": features computed once; "images": augmented images every epoch
    augmentation: AugmentationConfig = dataclasses.field(default_factory=AugmentationConfig)
    class_weights: str = "none"  # "balanced": inverse class frequency
    patience: int = 5
    val_fraction: float = 0.1
    seed: int = 42
    max_minutes: float | None = None  # time budget of all epochs (command line)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "weights": None if self.weights is None else str(self.weights)}

    def phases(self) -> list[tuple[str, int]]:
        """(phase, epochs) in order, phases of 0 epochs left out."""
        if not models.get_spec(self.backbone).pretrained:
            return [(PHASE_END_TO_END, self.epochs)]
        planned = [(PHASE_HEAD, self.epochs_head), (PHASE_FINETUNE, self.epochs_finetune)]
        return [(name, epochs) for name, epochs in planned if epochs > 0]


# --- Data ---
@dataclasses.dataclass(frozen=True)
class TrainingData:
    """The train and validation splits of a run and where they came from (config.json's `data`)."""

    train: data_module.Split
    val: data_module.Split
    provenance: dict


def training_splits(data, val_fraction: float = 0.1, seed: int = 42, cache=True, progress: bool = True) -> TrainingData:
    """The train split of `data` (a path, a `DatasetLocation` or a (train, val) pair of Splits) and its
    validation split: a `val/` folder beside train/, else a stratified, seeded `val_fraction` of train."""
    if isinstance(data, tuple) and len(data) == 2:
        return TrainingData(*data, data_provenance(None, "in-memory splits", *data, "given by the caller"))
    if isinstance(data, data_module.DatasetLocation):
        path, source = Path(data.path), data.source
    elif isinstance(data, (str, os.PathLike)):
        path, source = Path(data).expanduser(), "argument"
    else:
        raise ValueError(f"Expected a dataset path or a (train, val) pair of Splits; got {type(data).__name__}.")
    try:
        train = data_module.load_labelled(path, split="train", cache=cache, progress=progress)
    except ValueError as error:
        if "has no 'train' split" not in str(error):
            raise
        raise ValueError(f"'{path}' has no train split. Point --data to the folder that holds train/ (and "
                         "test/), or to fer2013.csv.") from None
    if path.is_dir() and (path / "val").is_dir():
        val, validation = data_module.load_split(path / "val", cache=cache, progress=progress), "val/ split folder"
    else:
        train, val = data_module.train_val_split(train, val_fraction=val_fraction, seed=seed)
        validation = f"{val_fraction:.0%} of train, stratified, seed {seed}"
    fingerprint = data_module.dataset_fingerprint(path)
    return TrainingData(train, val, data_provenance(path, source, train, val, validation, fingerprint))


def data_provenance(path, source: str, train, val, validation: str, fingerprint: str | None = None) -> dict:
    """config.json's `data`: where the images came from and how the validation split was made."""
    for name, split in (("train", train), ("val", val)):
        if len(split) == 0:
            raise ValueError(f"The {name} split is empty; training needs images in both train and val.")
    if tuple(train.class_names) != tuple(val.class_names):
        raise ValueError(f"train and val have different class names: {train.class_names} vs {val.class_names}.")
    return {
        "path": None if path is None else str(Path(path).expanduser().resolve()),
        "source": str(source),
        "fingerprint": fingerprint or array_fingerprint(train, val),
        "validation": validation,
        "train_size": len(train),
        "val_size": len(val),
        "train_class_counts": np.bincount(train.labels, minlength=len(train.class_names)).tolist(),
    }


def array_fingerprint(train, val) -> str:
    """A short hash of the train and validation images and labels: the data a run was trained on."""
    digest = hashlib.sha256()
    for array in (train.images, train.labels, val.images, val.labels):
        digest.update(np.ascontiguousarray(array).tobytes())
    return "arrays-" + digest.hexdigest()[:16]


def one_hot(split) -> np.ndarray:
    """The labels of `split` as float32 one-hot rows, what CategoricalCrossentropy expects."""
    return keras.utils.to_categorical(split.labels, len(split.class_names)).astype("float32")


# --- The run folder and its phases ---
def start_run(run_dir, settings: Settings, training_data: TrainingData, overwrite: bool = False) -> Path:
    """Claim `run_dir` for this run (an unfinished one with the same settings and data resumes) and return it;
    `overwrite` discards what training wrote there (only that)."""
    run_dir = Path(run_dir)
    runs.check_run_folder(run_dir, recognise=holds_run_state)
    state_path = run_dir / BACKUP_DIR / RUN_STATE
    if overwrite:
        runs.remove_artifacts(run_dir)
        _remove_training_state(run_dir)
    current = {"settings": settings.to_dict(), "data": array_fingerprint(training_data.train, training_data.val)}
    begun = any(len(phase_history(run_dir, folder.name)) or (folder / "keras_backup").exists()
                or (folder / "done.json").exists() for folder in _phase_folders(run_dir))
    if state_path.is_file() and begun:
        stored = _read_json(state_path)
        changed = sorted(key for key in set(stored.get("settings", {})) | set(current["settings"])
                         if key != "max_minutes" and stored.get("settings", {}).get(key) != current["settings"].get(key))
        if changed:
            raise ValueError(f"'{run_dir}' holds a run with other settings ({', '.join(changed)}). Use a new folder "
                             "(--out), or pass --overwrite (OVERWRITE = True) to discard it.")
        if stored.get("data") != current["data"]:
            raise ValueError(f"'{run_dir}' holds a run trained on other data ({stored.get('data')} there, "
                             f"{current['data']} now). Pass the same --data to resume it, use a new folder, or "
                             "pass --overwrite (OVERWRITE = True).")
    elif runs.is_run_dir(run_dir):
        raise ValueError(f"'{run_dir}' already holds a model.keras from another run. Use a new folder (--out), or "
                         "pass --overwrite (OVERWRITE = True) to replace it.")
    runs.claim_run_folder(run_dir, recognise=holds_run_state)
    for folder in (run_dir, run_dir / BACKUP_DIR, *_phase_folders(run_dir)):
        files.remove_stale_temporaries(folder, older_than_s=0)  # orphans of killed writes
    files.atomic_write_json(state_path, current)
    return run_dir


# What training writes in RUN_DIR/backup/<phase>/ (final.npz and done.json once the phase is finished);
# `--overwrite` deletes these and nothing else.
PHASE_FILES = ("keras_backup", "best.weights.h5", "history.csv", "final.npz", "done.json", "fit_done")


def _phase_folders(run_dir: Path) -> list[Path]:
    return [run_dir / BACKUP_DIR / phase for phase in (PHASE_HEAD, PHASE_FINETUNE, PHASE_END_TO_END)]


def _remove_training_state(run_dir: Path) -> None:
    for folder in _phase_folders(run_dir):
        shutil.rmtree(folder / "keras_backup", ignore_errors=True)
        for name in PHASE_FILES[1:]:
            (folder / name).unlink(missing_ok=True)
    (run_dir / BACKUP_DIR / RUN_STATE).unlink(missing_ok=True)
    for folder in (*_phase_folders(run_dir), run_dir / BACKUP_DIR):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when nothing of the user's is left in it


def holds_run_state(run_dir: Path) -> bool:
    """True for a run folder training started (it recognises its own files in it)."""
    return (Path(run_dir) / BACKUP_DIR / RUN_STATE).is_file()


def callbacks(run_dir, phase: str, patience: int = 5, baseline: float | None = None, progress: bool = True) -> list:
    """Keras's callbacks for one phase's `fit`: resumable after a crash (`BackupAndRestore`), the best
    epoch better than `baseline` kept, early stopping after `patience` epochs (0: off), history, one bar."""
    folder = Path(run_dir) / BACKUP_DIR / phase
    folder.mkdir(parents=True, exist_ok=True)
    _check_keras_backup(folder / "keras_backup")
    history = phase_history(run_dir, phase)
    best_so_far = [value for value in [baseline, history[MONITOR].max() if len(history) else None] if value is not None]
    chosen = [
        # Order matters: the best weights and the history row are on disk before the backup
        # records the epoch as done, so a kill between them repeats the epoch instead of losing it.
        PhaseProgress(phase, folder, progress),
        keras.callbacks.ModelCheckpoint(str(folder / "best.weights.h5"), monitor=MONITOR, mode="max", save_best_only=True,
                                        save_weights_only=True, initial_value_threshold=max(best_so_far, default=None)),
        keras.callbacks.CSVLogger(str(folder / "history.csv"), append=True),
        keras.callbacks.BackupAndRestore(str(folder / "keras_backup")),
    ]
    if patience:
        chosen.insert(1, keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max", patience=patience))
    return chosen


def _check_keras_backup(folder: Path) -> None:
    """A damaged backup (a kill during its write, a full disk) is named with the way out, up front."""
    import h5py

    for path in sorted(folder.glob("*.json")) + sorted(folder.glob("*.h5")):
        try:
            json.loads(path.read_text()) if path.suffix == ".json" else h5py.File(path, "r").close()
        except (OSError, ValueError):
            raise ValueError(f"The checkpoint '{path}' cannot be read, so the interrupted run cannot resume. Pass "
                             "--overwrite (OVERWRITE = True) to start it over, or use a new folder.") from None


class PhaseProgress(keras.callbacks.Callback):
    """One progress bar per phase (Keras draws one per epoch), each epoch's seconds and learning rate in
    its logs, and a `fit_done` mark once `fit` ends normally (Keras then deletes its backup)."""

    def __init__(self, phase: str, folder: Path, show: bool = True):
        super().__init__()
        self.phase, self.folder, self.show, self.bar = phase, Path(folder), show, None

    def on_train_begin(self, logs=None):
        # BackupAndRestore sets the epoch a fit starts at and Keras never resets it, so a model fitted
        # again (the next phase) would start there too; it runs after this callback and sets it anew.
        self.model._initial_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.show and self.bar is None:  # here, not at train begin: a resumed fit starts at `epoch`
            self.bar = progress.bar(total=self.params.get("epochs"), initial=epoch, desc=f"[{self.phase}]", unit="epoch")
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        # `logs` is the dict the later callbacks (CSVLogger) receive: they log these two too.
        logs["seconds"] = round(time.perf_counter() - self.started, 3)
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        if self.bar is not None:
            self.bar.set_postfix({key: f"{logs[key]:.3f}" for key in ("loss", MONITOR) if key in logs}, refresh=False)
            self.bar.update(1)

    def on_train_end(self, logs=None):
        if self.bar is not None:
            self.bar.close()
        files.atomic_write_bytes(self.folder / "fit_done", b"")


def phase_history(run_dir, phase: str):
    """The epochs a phase has run so far (a repeated epoch keeps its last row), as a DataFrame."""
    import pandas as pd

    path = Path(run_dir) / BACKUP_DIR / phase / "history.csv"
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame(columns=[column for column in HISTORY_COLUMNS if column != "phase"])
    frame = pd.read_csv(path).drop_duplicates("epoch", keep="last").reset_index(drop=True)
    return frame.assign(epoch=frame["epoch"] + 1)


def phase_done(run_dir, phase: str) -> bool:
    """True once the phase's `fit` has ended: rerunning its cell loads the result (`finish_phase`), not trains."""
    folder = Path(run_dir) / BACKUP_DIR / phase
    return (folder / "done.json").is_file() or (folder / "fit_done").is_file()


def finish_phase(model, run_dir, phase: str, trained=None, fallback: str | None = None) -> dict:
    """Keep the phase's best epoch in `model` (`trained`: the head model `fit` trained, if not `model`), or
    phase `fallback`'s result when no epoch beat it; mark the phase finished and return its record."""
    folder = Path(run_dir) / BACKUP_DIR / phase
    if (folder / "done.json").is_file():
        try:
            model.set_weights(_load_arrays(folder / "final.npz"))
        except ValueError as error:
            if "checkpoint" in str(error):
                raise
            raise ValueError(f"The {phase} phase in '{run_dir}' was trained with another model (a layer changed?). "
                             "Pass OVERWRITE = True (--overwrite) to train again, or use a new folder.") from None
        return _read_json(folder / "done.json")
    history = phase_history(run_dir, phase)
    kept = (folder / "best.weights.h5").is_file()
    if kept:
        (trained or model).load_weights(folder / "best.weights.h5")
    elif fallback is not None:
        model.set_weights(_load_arrays(Path(run_dir) / BACKUP_DIR / fallback / "final.npz"))
    best = int(history[MONITOR].idxmax()) if len(history) else None
    record = {
        "name": phase,
        "epochs_run": len(history),
        "best_epoch": None if best is None else int(history["epoch"][best]),
        "best_val_accuracy": None if best is None else float(history[MONITOR][best]),
        "kept": kept,
        "seconds": round(float(history["seconds"].sum()), 1) if len(history) else 0.0,
        "trainable_params": models.trainable_summary(trained or model)["trainable"],
    }
    files.atomic_write(folder / "final.npz", lambda stream: np.savez(stream, *model.get_weights()))
    files.atomic_write_json(folder / "done.json", record)  # last: the phase counts as done only now
    return record


def _load_arrays(path: Path) -> list:
    try:
        with np.load(path, allow_pickle=False) as stored:
            return [stored[f"arr_{index}"] for index in range(len(stored.files))]
    except Exception as error:  # zip, zlib, OSError, KeyError: all mean damaged or missing
        raise ValueError(f"The checkpoint '{path}' cannot be read ({type(error).__name__}). Pass --overwrite "
                         "(OVERWRITE = True) to start the run over, or use a new folder.") from None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ValueError(f"'{path}' is not a readable training state. Pass --overwrite (OVERWRITE = True) to "
                         "discard the interrupted run, or use a new folder.") from None


# --- The steps of the recipe ---
def backbone_features(model, images, batch_size: int = 256) -> np.ndarray:
    """The frozen backbone's pooled features ("gap") of `images`, computed once (inference mode)."""
    features = keras.Model(model.input, model.get_layer("gap").output, name="features")
    return models.predict(features, images, batch_size=batch_size).astype("float32")


def head_model(model):
    """features -> probabilities through `model`'s own head layers: training it trains `model`'s head."""
    features = keras.Input(shape=(int(model.get_layer("gap").output.shape[-1]),), name="features")
    x = features
    for name in ("head_norm", "head_dense", "head_dropout", "predictions"):
        if any(layer.name == name for layer in model.layers):
            x = model.get_layer(name)(x)
    return keras.Model(features, x, name="head")


def unfreeze_top(backbone, prefixes) -> int:
    """Unfreeze `backbone`'s layers whose names start with `prefixes`, BatchNorm aside; count those with weights."""
    prefixes = tuple(prefixes)
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = layer.name.startswith(prefixes) and not isinstance(layer, keras.layers.BatchNormalization)
    unfrozen = sum(1 for layer in backbone.layers if layer.trainable and layer.weights)
    if not unfrozen:
        raise ValueError(f"No backbone layer with weights starts with {prefixes}; nothing would be fine-tuned.")
    return unfrozen


def cosine_schedule(peak: float, epochs: int, steps_per_epoch: int):
    """Keras's `CosineDecay`: a linear warm-up to `peak` over 5% of the steps, then cosine to zero."""
    total = max(int(epochs) * int(steps_per_epoch), 1)
    warmup = int(total * WARMUP_FRACTION)
    return keras.optimizers.schedules.CosineDecay(0.0, decay_steps=max(total - warmup, 1), warmup_target=peak,
                                                  warmup_steps=warmup)


def adamw(learning_rate, weight_decay: float = 1e-4):
    """AdamW whose decay skips biases and BatchNorm's scale and offset (they are not weights to shrink)."""
    optimizer = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def save_run(run_dir, model, settings: Settings, training_data: TrainingData, records: list[dict]) -> runs.Run:
    """Write the run folder (model.keras, history.csv, config.json, val_metrics.json) and load it."""
    import pandas as pd

    run_dir = Path(run_dir)
    history = []
    for record in records:
        frame = phase_history(run_dir, record["name"]).assign(phase=record["name"])
        history.append(frame.assign(epoch=frame["epoch"] + sum(len(part) for part in history)))
    history = pd.concat(history, ignore_index=True).reindex(columns=list(HISTORY_COLUMNS)) if history else None
    spec = models.get_spec(settings.backbone)
    config = {
        "name": run_dir.name,
        "backbone": spec.name,
        "weights": _weights_provenance(settings.weights, spec),
        "img_size": int(model.get_layer("resize").output.shape[1]),
        "class_names": list(training_data.train.class_names),
        "data": training_data.provenance,
        "phases": records,
        "hyperparameters": settings.to_dict(),
        "n_params": int(model.count_params()),
        "trainable_params": models.trainable_summary(model)["trainable"],
        "mixed_precision": model.get_layer("head_dense").dtype_policy.name == "mixed_float16",
        "device": environment.device_summary(),
        "library_versions": environment.library_versions(),
        "wall_time_s": {record["name"]: record["seconds"] for record in records},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    runs.save_run(run_dir, model, config, history, validation_metrics(model, training_data.val))
    return loading.load_model(run_dir)


def validation_metrics(model, val) -> dict:
    """val_metrics.json: accuracy, macro-F1, balanced accuracy, log loss and recall per class."""
    from fer_utils import metrics

    probabilities = models.predict(model, val.images)
    scores = metrics.compute_metrics(val.labels, probabilities, val.class_names)
    matrix = metrics.confusion(val.labels, probabilities.argmax(axis=1), len(val.class_names))
    recalls = np.diag(matrix) / np.maximum(matrix.sum(axis=1), 1)
    return {
        "split": "val (carved from train)", "num_images": len(val),
        **{key: scores[key] for key in ("accuracy", "macro_f1", "balanced_accuracy", "log_loss")},
        "recall_per_class": {name: float(value) for name, value in zip(val.class_names, recalls)},
    }


def _weights_provenance(weights, spec) -> dict:
    if weights is None:
        return {"source": "none", "description": "random initialisation" if spec.pretrained else "trained from scratch"}
    if weights == "imagenet":
        local = models.find_pretrained_weights(spec.name)
        return {"source": "imagenet", "description": f"keras.applications.{spec.application} ImageNet weights",
                "file": str(local) if local else "downloaded by Keras"}
    path = Path(weights).expanduser()
    return {"source": "file", "description": f"weights file {path.name}", "path": str(path.resolve()),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def check_learned(validation, result, smoke: bool) -> str:
    """Validation accuracy against the model's own chance level (one-sided binomial test); in smoke
    mode (CI), an AssertionError when the model learned nothing: the pipeline's regression check."""
    from fer_utils import stats

    check = stats.chance_test(validation.labels, result.y_pred, len(validation.class_names))
    if smoke and not check["p_value"] < 0.05:
        raise AssertionError(f"the model did not learn on the demo data (p = {check['p_value']:.2g})")
    return (f"validation accuracy {check['accuracy']:.3f} against a chance level of {check['chance_accuracy']:.3f} "
            f"(one-sided binomial p = {check['p_value']:.2g}, {check['n']} images)")
