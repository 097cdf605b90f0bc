"""The training recipe of notebooks 03 and 04 as one function, `train`, for `python -m fer_utils train`,
with each backbone's `default_settings` and every bound of the settings checked once (`check_settings`)."""

from __future__ import annotations

import dataclasses
import errno
import math
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from fer_utils import data as data_module
from fer_utils import environment, models, runs, training
from fer_utils.augmentation import AugmentationConfig
from fer_utils.training import PHASE_FINETUNE, PHASE_HEAD, WARMUP_FRACTION, Settings


def default_settings(backbone: str, **overrides) -> Settings:
    """The recommended settings of `backbone` with `overrides` applied, checked."""
    spec = models.get_spec(backbone)
    values = dict(backbone=spec.name)
    if not spec.pretrained:  # 3e-3 beat 2e-3 in 20-minute CPU runs
        values.update(weights=None, epochs_head=0, epochs_finetune=0, epochs=30, learning_rate=3e-3, dropout=0.2,
                      augmentation=AugmentationConfig(rotation=0.025, zoom=0.05, translation=0.08, contrast=0.0),
                      patience=10)
    if isinstance(overrides.get("augmentation"), dict):  # the command line names only the strengths it changes
        overrides["augmentation"] = dataclasses.replace(values.get("augmentation", AugmentationConfig()),
                                                        **overrides["augmentation"])
    unknown = set(overrides) - {field.name for field in dataclasses.fields(Settings)}
    if unknown:
        raise ValueError(f"Unknown training setting(s) {sorted(unknown)}.")
    settings = Settings(**{**values, **overrides})
    check_settings(settings)
    return settings


def check_settings(settings: Settings) -> None:
    """Raise ValueError saying which setting (and command-line flag) is out of range."""
    spec = models.get_spec(settings.backbone)
    rules = [
        ("batch_size", settings.batch_size >= 1, "at least 1"),
        ("epochs_head", settings.epochs_head >= 0, "at least 0"),
        ("epochs_finetune", settings.epochs_finetune >= 0, "at least 0"),
        ("epochs", settings.epochs >= 0, "at least 0"),
        ("patience", settings.patience >= 0, "at least 0 (0: no early stopping)"),
        ("learning_rate", settings.learning_rate > 0, "positive"),
        ("finetune_learning_rate", settings.finetune_learning_rate > 0, "positive"),
        ("weight_decay", settings.weight_decay >= 0, "at least 0"),
        ("label_smoothing", 0 <= settings.label_smoothing < 1, "in [0, 1)"),
        ("dropout", 0 <= settings.dropout < 1, "in [0, 1)"),
        ("val_fraction", 0 < settings.val_fraction < 1, "in (0, 1)"),
        ("seed", settings.seed >= 0, "at least 0"),
        ("max_minutes", settings.max_minutes is None or settings.max_minutes > 0, "positive"),
        ("img_size", settings.img_size is None or settings.img_size >= spec.min_img_size,
         f"at least {spec.min_img_size} for {spec.name}"),
        ("head_mode", settings.head_mode in ("cached", "images"), "cached or images"),
        ("class_weights", settings.class_weights in ("none", "balanced"), "none or balanced"),
    ]
    for name, valid, expected in rules:
        value = getattr(settings, name)
        if not valid or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(f"{name} (--{name.replace('_', '-')}) must be {expected}, got {value}.")
    if spec.pretrained and settings.epochs:
        raise ValueError(f"{spec.name} trains in two phases: set --epochs-head and --epochs-finetune, not --epochs.")
    if not spec.pretrained and (settings.epochs_head or settings.epochs_finetune or not settings.epochs):
        raise ValueError(f"{spec.name} trains end to end in one phase: set --epochs N (>= 1).")
    if sum(epochs for _, epochs in settings.phases()) == 0:
        raise ValueError("Nothing to train: every phase has 0 epochs.")
    models.check_weights(spec.name, settings.weights)


class TimeBudget(keras.callbacks.Callback):
    """Stop when `seconds` run out (`train --max-minutes`), the warm-up and cosine decay following steps or
    time, whichever runs out first (Keras's schedules follow steps only), so the rate still reaches zero."""

    def __init__(self, seconds: float, peak: float, epochs: int, spent: float = 0.0):
        super().__init__()
        self.seconds, self.peak, self.epochs, self.spent = seconds, peak, epochs, spent
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.step, self.total = epoch * self.params["steps"], self.epochs * self.params["steps"]

    def on_train_batch_begin(self, batch, logs=None):
        elapsed = self.spent + time.perf_counter() - self.started
        progress = min(max(self.step / self.total, elapsed / self.seconds), 1.0)
        warm = min(progress / WARMUP_FRACTION, 1.0)
        decay = max(progress - WARMUP_FRACTION, 0.0) / (1.0 - WARMUP_FRACTION)
        self.model.optimizer.learning_rate = self.peak * warm * 0.5 * (1.0 + math.cos(math.pi * decay))
        if progress >= 1.0 and self.step:
            self.model.stop_training = True  # Keras ends the epoch after this batch

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1


def train(data, settings: Settings, run_dir, progress: bool = True, cache: bool = True, overwrite: bool = False) -> Path:
    """Train `settings` on `data` into `run_dir` (notebooks 03/04's cells); a rerun resumes at the last
    finished epoch. Nothing is written before the settings, the folder and the data have been checked."""
    from fer_utils import backend

    check_settings(settings)
    # Recorded resolved, so a run resumed on another machine (CPU after GPU) is not mixed with it.
    settings = dataclasses.replace(settings, img_size=settings.img_size or models.default_img_size(settings.backbone))
    runs.check_run_folder(run_dir, recognise=training.holds_run_state)
    training_data = training.training_splits(data, settings.val_fraction, settings.seed, cache=cache, progress=progress)
    run_dir = training.start_run(run_dir, settings, training_data, overwrite=overwrite)
    train_split, val = training_data.train, training_data.val
    environment.set_seeds(settings.seed)
    if backend.gpu_names():
        keras.mixed_precision.set_global_policy("mixed_float16")
    model = models.build_model(settings.backbone, img_size=settings.img_size, weights=settings.weights,
                               dropout=settings.dropout, head_batchnorm=settings.head_batchnorm,
                               augmentation=settings.augmentation, seed=settings.seed,
                               class_names=train_split.class_names)
    keras.mixed_precision.set_global_policy("float32")
    needed = _space_needed(model)
    free = shutil.disk_usage(run_dir).free
    if free < needed:
        raise OSError(f"'{run_dir}' has {free / 1e6:,.0f} MB free, but a {settings.backbone} run needs about "
                      f"{needed / 1e6:,.0f} MB (its model, checkpoints and backups). Free some space or choose "
                      "another --out folder.")
    class_weight = data_module.class_weights(train_split.labels) if settings.class_weights == "balanced" else None
    y_train, y_val = training.one_hot(train_split), training.one_hot(val)
    budget = settings.max_minutes * 60.0 if settings.max_minutes else None
    records = []
    finished = all((run_dir / name).is_file() for name in runs.ARTIFACT_FILES) and all(
        (run_dir / training.BACKUP_DIR / phase / "done.json").is_file() for phase, _ in settings.phases())
    for phase, epochs in settings.phases():
        if phase == PHASE_HEAD:
            model.get_layer("backbone").trainable = False
        elif phase == PHASE_FINETUNE:
            training.unfreeze_top(model.get_layer("backbone"), models.get_spec(settings.backbone).finetune_prefixes)
        baseline = records[-1]["best_val_accuracy"] if phase == PHASE_FINETUNE and records else None
        cached = phase == PHASE_HEAD and settings.head_mode == "cached"
        trained = training.head_model(model) if cached else model
        if not training.phase_done(run_dir, phase):
            x_train, x_val = train_split.images, val.images
            if cached:
                features = training.backbone_features(model, np.concatenate([x_train, x_val]))
                x_train, x_val = features[: len(x_train)], features[len(x_train):]
            peak = settings.finetune_learning_rate if phase == PHASE_FINETUNE else settings.learning_rate
            steps = -(-len(x_train) // settings.batch_size)
            rate = peak if phase == PHASE_HEAD or budget else training.cosine_schedule(peak, epochs, steps)
            trained.compile(optimizer=training.adamw(rate, settings.weight_decay), metrics=["accuracy"],
                            loss=keras.losses.CategoricalCrossentropy(label_smoothing=settings.label_smoothing))
            extra = []
            if budget:
                spent = float(training.phase_history(run_dir, phase)["seconds"].sum())
                extra.append(TimeBudget(budget - sum(record["seconds"] for record in records), peak, epochs, spent))
            try:
                trained.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=epochs, batch_size=settings.batch_size,
                            class_weight=class_weight, verbose=0,
                            callbacks=training.callbacks(run_dir, phase, settings.patience, baseline, progress) + extra)
            except OSError as error:  # h5py and Keras report a full disk in their own words
                if "No space left" not in str(error) and getattr(error, "errno", None) != errno.ENOSPC:
                    raise
                raise OSError(f"The disk holding '{run_dir}' is full while training writes its checkpoints; a run "
                              f"needs about {_space_needed(model) / 1e6:,.0f} MB. Free some space, then run the same "
                              "command again: it resumes from the last finished epoch.") from None
        fallback = records[-1]["name"] if baseline is not None else None
        records.append(training.finish_phase(model, run_dir, phase, trained=trained, fallback=fallback))
    if not finished:
        training.save_run(run_dir, model, settings, training_data, records)
    elif progress:
        print(f"{run_dir} already holds this finished run; nothing to do (--overwrite retrains it).")
    return run_dir


def _space_needed(model) -> int:
    """Bytes a run writes at most: about 8 copies of the float32 weights (checkpoints, optimizer moments)."""
    return 8 * 4 * model.count_params()
