"""Training: the head phase (with a cached-feature fast path), fine-tuning, and run folders.

A run has one or two phases:

- Pretrained backbones (`vgg16`, `resnet50`, `efficientnetb0`):
  1. "head": the backbone is frozen and only the head learns. The fast path ("cached") runs the
     backbone once over the train and validation images, then trains the head on those cached
     features; the head's layers are the model's own layer objects, so the trained head is in the
     full model with nothing to copy. The seed-style path ("images") feeds augmented images
     through the frozen backbone every epoch.
  2. "finetune": the top blocks of the backbone are unfrozen (BatchNorm stays frozen) and trained
     with a low, cosine-decayed learning rate.
- `small_cnn`: one "end_to_end" phase, every layer trained from scratch.

Model selection (early stopping, best weights) uses the validation split carved from train; the
test split is never seen. Every epoch leaves a checkpoint (weights, optimizer state, history, early
stopping state) under RUN_DIR/backup, written so that a kill at any moment loses at most the
epoch in progress; re-running the same call continues from there. The finished run folder is
written by `fer_utils.runs.save_run` (model.keras, history.csv, config.json, val_metrics.json).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import re
import time
from pathlib import Path

import numpy as np

from fer_utils import files, runs
from fer_utils.augmentation import AugmentationConfig

PHASE_HEAD = "head"
PHASE_FINETUNE = "finetune"
PHASE_END_TO_END = "end_to_end"
HEAD_MODES = ("cached", "images")
HISTORY_COLUMNS = ("epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")
PHASES = (PHASE_HEAD, PHASE_FINETUNE, PHASE_END_TO_END)
BACKUP_DIR = "backup"
STATE_FILE = "state.json"
# What a phase folder under RUN_DIR/backup holds; nothing else there is deleted.
_CHECKPOINT_NAME = re.compile(r"state\.json|final\.npz|epoch\d{4}\.weights\.h5|best-epoch\d{4}\.npz")
# Variables that AdamW does not decay: biases and BatchNorm's scale and offset.
NO_WEIGHT_DECAY = ("bias", "gamma", "beta")


@dataclasses.dataclass
class TrainConfig:
    """Every choice that shapes a training run; `default_config` fills in per-backbone defaults.

    Attributes:
        backbone: One of `fer_utils.models.BACKBONES`.
        weights: "imagenet", None (random initialisation) or a weights file path.
        img_size: Input size the backbone sees; None picks 48 on CPU, the spec's size on GPU.
        epochs_head: Epochs of the head phase (pretrained backbones).
        epochs_finetune: Epochs of the fine-tuning phase; 0 skips it.
        epochs_end_to_end: Epochs of `small_cnn`'s single phase.
        head_mode: "cached" (features computed once, fast) or "images" (seed-style).
        batch_size: Global batch size (split across GPUs under MirroredStrategy).
        learning_rate: Peak learning rate of the head phase and of the end-to-end phase.
        finetune_learning_rate: Peak learning rate of the fine-tuning phase.
        warmup_fraction: Share of each phase's steps spent warming the learning rate up linearly;
            the rest follows a cosine decay to zero.
        weight_decay: Decoupled weight decay (not applied to biases and BatchNorm).
        optimizer: "adamw" or "sgd" (Nesterov momentum 0.9).
        label_smoothing: Label smoothing of the cross-entropy.
        head_units, dropout: Width and dropout of the head.
        head_batchnorm: Standardise the pooled features (BatchNormalization) before the head; off
            by default (the seed's head), needed for random-weight backbones (see `build_model`).
        augment: Random augmentation inside the model during training.
        augmentation: Strength of each transform.
        class_weights: Balanced class weights in the loss (FER's classes are imbalanced).
        finetune_prefixes: Layer-name prefixes unfrozen in phase 2; None uses the backbone's.
        val_fraction: Share of train held out (stratified) for validation.
        monitor: "val_accuracy" or "val_loss": what early stopping and the best checkpoint follow.
        patience: Epochs without improvement before a phase stops early; 0 disables it.
        max_minutes: Budget for all training epochs together; None means no budget. The learning
            rate schedule then advances by whichever runs out first, steps or time, so it still
            decays to zero when time is short, and training stops cleanly at the budget.
        seed: Seed of everything random (weights, shuffling, augmentation, validation split).
        mixed_precision: float16 compute on GPU; None turns it on when a GPU is present. The CPU
            always runs float32.
        jit_compile: Passed to `model.compile`; "auto" lets Keras use XLA on GPU where every
            layer supports it.
        name: Display name of the run; None uses the run folder's name.
    """

    backbone: str = "vgg16"
    weights: str | None = "imagenet"
    img_size: int | None = None
    epochs_head: int = 10
    epochs_finetune: int = 10
    epochs_end_to_end: int = 0
    head_mode: str = "cached"
    batch_size: int = 64
    learning_rate: float = 1e-3
    finetune_learning_rate: float = 1e-4
    warmup_fraction: float = 0.05
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    label_smoothing: float = 0.1
    head_units: int = 128
    dropout: float = 0.5
    head_batchnorm: bool = False
    augment: bool = True
    augmentation: AugmentationConfig = dataclasses.field(default_factory=AugmentationConfig)
    class_weights: bool = True
    finetune_prefixes: tuple[str, ...] | None = None
    val_fraction: float = 0.1
    monitor: str = "val_accuracy"
    patience: int = 5
    max_minutes: float | None = None
    seed: int = 42
    mixed_precision: bool | None = None
    jit_compile: str | bool = "auto"
    name: str | None = None

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field."""
        values = dataclasses.asdict(self)
        values["augmentation"] = self.augmentation.to_dict()
        values["weights"] = None if self.weights is None else str(self.weights)
        if self.finetune_prefixes is not None:
            values["finetune_prefixes"] = list(self.finetune_prefixes)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Rebuild a config from `to_dict`'s output (unknown keys are an error)."""
        values = dict(values)
        if isinstance(values.get("augmentation"), dict):
            values["augmentation"] = AugmentationConfig(**values["augmentation"])
        if values.get("finetune_prefixes") is not None:
            values["finetune_prefixes"] = tuple(values["finetune_prefixes"])
        return cls(**values)


def default_config(backbone: str, **overrides) -> TrainConfig:
    """The recommended `TrainConfig` for `backbone`, with `overrides` applied on top.

    Pretrained backbones: 10 head epochs on cached features, then 10 fine-tuning epochs at a peak
    learning rate of 1e-4. `small_cnn`: 30 end-to-end epochs with AdamW at 3e-3, batch 64,
    dropout 0.2 and milder augmentation. Balanced class weights are on for every backbone; they
    trade some plain accuracy for recall on the rare classes (pass class_weights=False,
    `--no-class-weights`, to optimise plain accuracy).
    """
    from fer_utils import models

    spec = models.get_spec(backbone)
    if spec.pretrained:
        values = dict(backbone=spec.name, weights="imagenet")
    else:
        values = dict(
            backbone=spec.name,
            weights=None,
            epochs_head=0,
            epochs_finetune=0,
            epochs_end_to_end=30,
            batch_size=64,
            learning_rate=3e-3,  # 20-minute CPU runs: val 62.9% at 3e-3, 61.7% at 2e-3.
            weight_decay=1e-4,
            dropout=0.2,
            # Milder than the transfer default: a short from-scratch run learns faster with less
            # distortion. No contrast change: small_cnn standardises each face anyway.
            augmentation=AugmentationConfig(rotation=0.025, zoom=0.05, translation=0.08, contrast=0.0),
            patience=10,
        )
    values.update(overrides)
    unknown = set(values) - {field.name for field in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ValueError(f"Unknown training option(s) {sorted(unknown)}. Valid ones: {_field_names()}.")
    return TrainConfig(**values)


def _field_names() -> str:
    return ", ".join(field.name for field in dataclasses.fields(TrainConfig))


def validate_config(config: TrainConfig) -> None:
    """Raise ValueError when `config` is inconsistent (what is wrong and how to fix it)."""
    from fer_utils import models

    spec = models.get_spec(config.backbone)
    for name in ("epochs_head", "epochs_finetune", "epochs_end_to_end"):
        if int(getattr(config, name)) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(config, name)}.")
    if spec.pretrained:
        if config.epochs_end_to_end:
            raise ValueError(
                f"{spec.name} trains in two phases; set epochs_head and epochs_finetune "
                "(--epochs-head, --epochs-finetune) instead of epochs_end_to_end (--epochs)."
            )
        if config.epochs_head + config.epochs_finetune == 0:
            raise ValueError("Nothing to train: epochs_head and epochs_finetune are both 0.")
    else:
        if config.epochs_head or config.epochs_finetune:
            raise ValueError(
                f"{spec.name} trains end to end in one phase; set epochs_end_to_end (--epochs) "
                "instead of epochs_head / epochs_finetune."
            )
        if config.epochs_end_to_end < 1:
            raise ValueError(f"{spec.name} needs epochs_end_to_end >= 1 (--epochs N).")
    if config.optimizer not in ("adamw", "sgd"):
        raise ValueError(f"optimizer must be 'adamw' or 'sgd', got '{config.optimizer}'.")
    if config.head_mode not in HEAD_MODES:
        raise ValueError(f"head_mode must be one of {HEAD_MODES}, got '{config.head_mode}'.")
    if config.monitor not in ("val_accuracy", "val_loss"):
        raise ValueError(f"monitor must be 'val_accuracy' or 'val_loss', got '{config.monitor}'.")
    if config.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {config.batch_size}.")
    if not 0.0 <= config.label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {config.label_smoothing}.")
    if not 0.0 <= config.warmup_fraction < 1.0:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {config.warmup_fraction}.")
    if config.max_minutes is not None and config.max_minutes <= 0:
        raise ValueError(f"max_minutes must be positive (or None for no budget), got {config.max_minutes}.")
    if config.learning_rate <= 0 or config.finetune_learning_rate <= 0:
        raise ValueError("Learning rates must be positive.")
    if config.img_size is not None and int(config.img_size) < spec.min_img_size:
        raise ValueError(
            f"img_size={config.img_size} is too small for {spec.name}: it needs at least {spec.min_img_size} px "
            "(--img-size). Use 48 (FER's native size) or larger."
        )
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {config.dropout}.")
    if config.head_units < 1:
        raise ValueError(f"head_units must be >= 1, got {config.head_units}.")
    if not 0.0 < config.val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {config.val_fraction}.")
    if config.patience < 0 or config.weight_decay < 0:
        raise ValueError("patience and weight_decay must be >= 0.")
    models.check_weights(spec.name, config.weights)


def planned_phases(config: TrainConfig) -> list[tuple[str, int]]:
    """The phases a config runs, in order, with their epoch counts (phases with 0 epochs dropped)."""
    from fer_utils import models

    if not models.get_spec(config.backbone).pretrained:
        return [(PHASE_END_TO_END, int(config.epochs_end_to_end))]
    phases = [(PHASE_HEAD, int(config.epochs_head)), (PHASE_FINETUNE, int(config.epochs_finetune))]
    return [(name, epochs) for name, epochs in phases if epochs > 0]


# =============================================================================================
# Which layers train in which phase
# =============================================================================================
def set_phase_trainable(model, phase: str, finetune_prefixes=()) -> None:
    """Freeze and unfreeze `model`'s layers for `phase`.

    - "head": the backbone is frozen entirely; the head (head_dense, predictions) trains.
    - "finetune": backbone layers whose names start with one of `finetune_prefixes` train,
      except BatchNormalization layers, which stay frozen (and in inference mode).
    - "end_to_end": everything trains.
    """
    import keras

    backbone = model.get_layer("backbone")
    if phase == PHASE_END_TO_END:
        model.trainable = True
        backbone.trainable = True
        for layer in backbone.layers:
            layer.trainable = True
        return
    if phase == PHASE_HEAD:
        backbone.trainable = False
        return
    if phase != PHASE_FINETUNE:
        raise ValueError(f"Unknown phase '{phase}'; expected '{PHASE_HEAD}', '{PHASE_FINETUNE}' or '{PHASE_END_TO_END}'.")
    prefixes = tuple(finetune_prefixes)
    if not prefixes:
        raise ValueError("Fine-tuning needs at least one layer-name prefix (e.g. 'block5' for vgg16).")
    backbone.trainable = True
    unfrozen = 0
    for layer in backbone.layers:
        is_batch_norm = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = layer.name.startswith(prefixes) and not is_batch_norm
        unfrozen += bool(layer.trainable and layer.weights)
    if unfrozen == 0:
        raise ValueError(
            f"No backbone layer with weights starts with {prefixes}; nothing would be fine-tuned. "
            f"Layer names look like {[layer.name for layer in backbone.layers[-5:]]}."
        )


def trainable_layer_names(model) -> list[str]:
    """Names of the layers with trainable weights, the backbone's listed as 'backbone/<name>'."""
    names = []
    for layer in model.layers:
        if layer.name == "backbone":
            names += [f"backbone/{inner.name}" for inner in layer.layers if inner.trainable_weights]
        elif layer.trainable_weights:
            names.append(layer.name)
    return names


# =============================================================================================
# The cached-feature fast path
# =============================================================================================
def feature_model(model):
    """A model from raw pixels to the pooled backbone features ("gap"), for inference only."""
    import keras

    return keras.Model(model.input, model.get_layer("gap").output, name="features")


def head_model(model):
    """A model from pooled features to class probabilities that shares `model`'s head layers.

    Training it trains the full model's head: the layers (and their weights) are the same objects.
    """
    import keras

    width = int(model.get_layer("gap").output.shape[-1])
    features = keras.Input(shape=(width,), name="features")
    x = features
    if any(layer.name == "head_norm" for layer in model.layers):
        x = model.get_layer("head_norm")(x)
    x = model.get_layer("head_dense")(x)
    x = model.get_layer("head_dropout")(x)
    outputs = model.get_layer("predictions")(x)
    return keras.Model(features, outputs, name="head")


def compute_features(model, images, batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """Run the frozen backbone once over `images` and return the pooled features (float32)."""
    from fer_utils import models

    return np.asarray(models.predict(feature_model(model), images, batch_size=batch_size), dtype=np.float32)


# =============================================================================================
# Callbacks: learning-rate schedule, checkpoints, early stopping, time budget
# =============================================================================================
def cosine_learning_rate(progress: float, peak: float, warmup_fraction: float) -> float:
    """Linear warm-up to `peak` over the first `warmup_fraction`, then cosine decay to zero."""
    progress = min(max(progress, 0.0), 1.0)
    if warmup_fraction > 0 and progress < warmup_fraction:
        return peak * progress / warmup_fraction
    decay = (progress - warmup_fraction) / max(1.0 - warmup_fraction, 1e-12)
    return 0.5 * peak * (1.0 + math.cos(math.pi * decay))


def _phase_controller_class():
    import keras

    class PhaseController(keras.callbacks.Callback):
        """Learning-rate schedule, history, best weights, early stopping, time budget, checkpoints.

        Everything it knows is saved in `folder/state.json` at the end of each epoch together with
        the model's weights and optimizer state, so a new controller on the same folder continues
        exactly where the last one stopped (`initial_epoch` tells `fit` where that is).
        """

        def __init__(self, folder, phase, epochs, steps_per_epoch, peak_learning_rate, warmup_fraction,
                     monitor, patience, epoch_offset, budget_seconds=None):
            super().__init__()
            self.folder = Path(folder)
            self.phase = phase
            self.total_steps = max(int(epochs) * int(steps_per_epoch), 1)
            self.peak_learning_rate = float(peak_learning_rate)
            self.warmup_fraction = float(warmup_fraction)
            self.monitor = monitor
            self.patience = int(patience)
            self.epoch_offset = int(epoch_offset)
            self.state = {
                "epochs_done": 0, "history": [], "best_value": None, "best_epoch": None, "wait": 0,
                "elapsed_s": 0.0, "stopped_early": False, "out_of_time": False,
                "budget_s": budget_seconds, "weights_file": None, "best_file": None, "steps_done": 0,
            }
            state_path = self.folder / STATE_FILE
            if state_path.is_file():
                self.state.update(_read_state(state_path))
            # A resumed run may come with a new time budget (e.g. a longer session); it wins.
            self.state["budget_s"] = budget_seconds

        # -- resuming -------------------------------------------------------------------------
        @property
        def initial_epoch(self) -> int:
            return int(self.state["epochs_done"])

        @property
        def finished(self) -> bool:
            return bool(self.state["stopped_early"] or self.state["out_of_time"])

        def restore(self) -> None:
            """Load the last checkpoint's weights and optimizer state into the compiled model."""
            if not self.state["weights_file"]:
                return
            path = self.folder / self.state["weights_file"]
            if not self.model.optimizer.built:
                self.model.optimizer.build(self.model.trainable_variables)
            try:
                self.model.load_weights(path)
            except Exception as error:  # h5py and Keras raise OSError, ValueError, KeyError ...
                raise _damaged_checkpoint(path, error) from None

        # -- schedule and time budget ---------------------------------------------------------
        def _elapsed(self) -> float:
            return self.state["elapsed_s"] + (time.perf_counter() - self._epoch_start)

        def _progress(self, step: int) -> float:
            progress = step / self.total_steps
            if self.state["budget_s"]:
                progress = max(progress, self._elapsed() / self.state["budget_s"])
            return progress

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch_start = time.perf_counter()
            self._step = int(self.state["steps_done"])

        def on_train_batch_begin(self, batch, logs=None):
            progress = self._progress(self._step)
            if progress >= 1.0 and self.state["budget_s"] and self._step > 0:
                self.state["out_of_time"] = True
                self.model.stop_training = True
            self.model.optimizer.learning_rate = cosine_learning_rate(
                progress, self.peak_learning_rate, self.warmup_fraction
            )

        def on_train_batch_end(self, batch, logs=None):
            self._step += 1

        # -- end of epoch: history, best weights, early stopping, checkpoint -------------------
        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            seconds = time.perf_counter() - self._epoch_start
            self.state["elapsed_s"] += seconds
            self.state["steps_done"] = self._step
            row = {"epoch": self.epoch_offset + epoch + 1, "phase": self.phase}
            for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
                row[key] = float(logs[key]) if key in logs else None
            row["learning_rate"] = float(np.asarray(self.model.optimizer.learning_rate))
            row["seconds"] = round(seconds, 3)
            self.state["history"] = self.state["history"][:epoch] + [row]

            value = logs.get(self.monitor)
            improved = value is not None and (
                self.state["best_value"] is None
                or (value > self.state["best_value"] if self.monitor == "val_accuracy" else value < self.state["best_value"])
            )
            if improved:
                self.state.update(best_value=float(value), best_epoch=epoch + 1, wait=0)
                best_file = f"best-epoch{epoch + 1:04d}.npz"
                _save_arrays(self.folder / best_file, self.model.get_weights())
                self.state["best_file"] = best_file
            else:
                self.state["wait"] += 1
                if self.patience and self.state["wait"] >= self.patience:
                    self.state["stopped_early"] = True
                    self.model.stop_training = True

            # Weights first under a fresh name, then the state that points to them: a kill at any
            # moment leaves a state.json whose files are complete.
            weights_file = f"epoch{epoch + 1:04d}.weights.h5"
            self.folder.mkdir(parents=True, exist_ok=True)
            self.model.save_weights(self.folder / weights_file)
            self.state["epochs_done"] = epoch + 1
            self.state["weights_file"] = weights_file
            files.atomic_write_json(self.folder / STATE_FILE, self.state)
            _remove_unreferenced(self.folder, keep={weights_file, self.state["best_file"], STATE_FILE})

        def restore_best(self) -> None:
            """Put the best epoch's weights back into the model (no-op if none was recorded)."""
            if self.state["best_file"]:
                self.model.set_weights(_load_arrays(self.folder / self.state["best_file"]))

    return PhaseController


def _save_arrays(path: Path, arrays) -> None:
    """Save a list of arrays atomically as an .npz (keys arr_0, arr_1, ... in order)."""
    import io

    buffer = io.BytesIO()
    np.savez(buffer, *[np.asarray(array) for array in arrays])
    files.atomic_write_bytes(path, buffer.getvalue())


def _load_arrays(path: Path) -> list[np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as stored:
            return [stored[f"arr_{index}"] for index in range(len(stored.files))]
    except Exception as error:  # zip, zlib, OSError, KeyError ...: all mean "damaged or missing"
        raise _damaged_checkpoint(path, error) from None


def _damaged_checkpoint(path: Path, error: BaseException) -> ValueError:
    run_dir = path.parent.parent.parent
    return ValueError(
        f"The checkpoint '{path}' cannot be read ({type(error).__name__}), so the interrupted run in "
        f"'{run_dir}' cannot resume. Pass --overwrite to start it over, or use a new --out folder."
    )


def _remove_unreferenced(folder: Path, keep: set) -> None:
    for path in folder.iterdir():
        if path.is_file() and path.name not in keep and _is_checkpoint_name(path.name):
            path.unlink(missing_ok=True)


# =============================================================================================
# Training
# =============================================================================================
def train_model(train, val, config: TrainConfig, run_dir, progress=True, fingerprint: str | None = None,
                callbacks=None, overwrite: bool = False, extra_config: dict | None = None) -> Path:
    """Train a model on `train`, select it on `val`, and write the run folder `run_dir`.

    Args:
        train, val: `fer_utils.data.Split`s (uint8 images (N, 48, 48, 1), int labels, class names).
            `val` drives early stopping and the best checkpoint; pass no test data here.
        config: A `TrainConfig` (see `default_config`).
        run_dir: The run folder: new, empty, or one written by training (it has a `.fer-run`
            marker). If it holds an unfinished run with the same config and data, training
            resumes from its last completed epoch; a finished one is returned as it is.
        progress: "phase" (one progress bar per phase, then its summary line: what the notebooks
            and the command line show), Keras progress bars (True or 1), one line per epoch (2), or
            silence (False). The per-epoch numbers are always in the run's `history.csv`.
        fingerprint: The dataset fingerprint recorded in config.json; default: a hash of `train`.
        callbacks: Extra Keras callbacks for every `fit` call.
        overwrite: Discard the run `run_dir` holds (only the files training wrote) and start over.
        extra_config: Extra entries for config.json (e.g. the data path).

    Returns:
        `run_dir` as a Path.

    Raises:
        ValueError: an inconsistent config; `run_dir` holds a run with other settings or other
            data, or someone else's files (`runs.RunFolderError`), or another process is training
            into it. Nothing is written to `run_dir` before these checks pass.
    """
    validate_config(config)
    _check_splits(train, val)
    run_dir = Path(run_dir)
    verbose = _verbosity(progress)
    data_fingerprint = _array_fingerprint(train, val)
    runs.claim_run_folder(run_dir, recognise=_holds_training_state)
    with runs.run_lock(run_dir):
        run_state = _open_run_state(run_dir, config, data_fingerprint, overwrite)
        if run_state.get("complete") and runs.is_run_dir(run_dir):
            _say(verbose, f"{run_dir} already holds a finished run; nothing to do (pass overwrite=True to retrain).")
            return run_dir
        return _train_locked(
            train, val, config, run_dir, run_state, verbose, fingerprint or data_fingerprint, callbacks, extra_config
        )


def _train_locked(train, val, config, run_dir, run_state, verbose, fingerprint, callbacks, extra_config) -> Path:
    """The body of `train_model`, run while it holds the run folder's lock."""
    import keras

    from fer_utils import backend, environment, models

    backup = run_dir / BACKUP_DIR
    spec = models.get_spec(config.backbone)
    gpus = backend.gpu_names()
    backend.enable_memory_growth()
    environment.set_seeds(config.seed)
    img_size = int(config.img_size or models.default_img_size(spec.name, on_gpu=bool(gpus)))
    use_mixed_precision = bool(gpus) if config.mixed_precision is None else bool(config.mixed_precision and gpus)
    strategy = backend.distribution_strategy()
    class_names = tuple(train.class_names)
    build_arguments = dict(
        backbone=spec.name, img_size=img_size, head_units=config.head_units, dropout=config.dropout,
        head_batchnorm=config.head_batchnorm,
        augment=config.augment, augmentation=config.augmentation, seed=config.seed, class_names=class_names,
    )

    previous_policy = keras.mixed_precision.global_policy()
    try:
        if use_mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        with strategy.scope():
            model = models.build_model(weights=config.weights, **build_arguments)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    # Written only now that the model is built: a failed build leaves nothing that blocks a retry.
    files.atomic_write_json(backup / STATE_FILE, run_state)
    y_train = keras.utils.to_categorical(train.labels, len(class_names)).astype("float32")
    y_val = keras.utils.to_categorical(val.labels, len(class_names)).astype("float32")
    class_weight = _class_weight(train.labels, len(class_names)) if config.class_weights else None

    phases = planned_phases(config)
    wall_time = {}
    phase_records = []
    for index, (phase, epochs) in enumerate(phases):
        folder = backup / phase
        completed = run_state["completed"].get(phase)
        if completed:
            # Finished before an interruption: take its weights and history, skip the work.
            model.set_weights(_load_arrays(folder / "final.npz"))
            wall_time[phase] = completed["seconds"]
            phase_records.append(completed)
            continue
        later_epochs = sum(later for _, later in phases[index + 1:])
        budget = _phase_budget(config, wall_time, epochs, later_epochs)
        epoch_offset = sum(record["epochs_run"] for record in phase_records)
        started = time.perf_counter()
        with strategy.scope():
            record = _run_phase(
                model, phase, epochs, config, spec, folder, train, val, y_train, y_val, class_weight,
                epoch_offset, budget, verbose, callbacks,
            )
        record["seconds"] = round(record["seconds"] + time.perf_counter() - started, 3)
        _save_arrays(folder / "final.npz", model.get_weights())
        run_state["completed"][phase] = record
        files.atomic_write_json(backup / STATE_FILE, run_state)
        wall_time[phase] = record["seconds"]
        phase_records.append(record)

    # Each phase restored its own best epoch. If fine-tuning never beat the head phase's best, keep
    # the head phase's weights: the run's model is the best one seen on validation, whichever phase.
    selected_phase = _best_phase(phase_records, config.monitor)
    if selected_phase != phase_records[-1]["name"]:
        model.set_weights(_load_arrays(backup / selected_phase / "final.npz"))
        _say(verbose, f"[{selected_phase}] keeping this phase's weights: later phases did not improve {config.monitor}")

    # Save a clean float32 copy: no optimizer, no mixed-precision policy, every layer as built.
    final_model = models.build_model(weights=None, **build_arguments)
    final_model.set_weights(model.get_weights())
    history = _history_frame([row for record in phase_records for row in record["history"]])
    val_metrics = _validation_metrics(final_model, val, config.batch_size)
    wall_time["total"] = round(sum(wall_time.values()), 3)
    run_config = {
        "name": config.name or run_dir.name,
        "backbone": spec.name,
        "weights": _weights_provenance(config.weights, spec),
        "img_size": img_size,
        "class_names": list(class_names),
        "phases": [
            {key: value for key, value in record.items() if key != "history"} for record in phase_records
        ],
        "selected_phase": selected_phase,
        "hyperparameters": config.to_dict(),
        "n_params": int(final_model.count_params()),
        "train_size": len(train),
        "val_size": len(val),
        "train_class_counts": np.bincount(train.labels, minlength=len(class_names)).tolist(),
        "class_weight": class_weight,
        "dataset_fingerprint": fingerprint,
        "mixed_precision": use_mixed_precision,
        "replicas": int(strategy.num_replicas_in_sync),
        "device": environment.device_summary(),
        "library_versions": environment.library_versions(),
        "wall_time_s": wall_time,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    run_config.update(extra_config or {})
    runs.save_run(run_dir, final_model, run_config, history=history, val_metrics=val_metrics)
    run_state["complete"] = True
    files.atomic_write_json(backup / STATE_FILE, run_state)
    for phase, _ in phases:
        _remove_checkpoints(backup / phase)
    _say(verbose, f"Run folder: {run_dir}  (val accuracy {val_metrics['accuracy']:.4f})", detail=True)
    return run_dir


def _best_phase(phase_records: list[dict], monitor: str) -> str:
    """Name of the phase whose best epoch scored best on `monitor` (the last one wins ties)."""
    sign = -1.0 if monitor.endswith("loss") else 1.0
    scored = [
        (sign * record["best_" + monitor], index, record["name"])
        for index, record in enumerate(phase_records)
        if record.get("best_" + monitor) is not None
    ]
    return max(scored)[2] if scored else phase_records[-1]["name"]


def _run_phase(model, phase, epochs, config, spec, folder, train, val, y_train, y_val, class_weight,
               epoch_offset, budget, verbose, callbacks) -> dict:
    """Train one phase, restore its best weights, and return its record for config.json."""
    set_phase_trainable(model, phase, config.finetune_prefixes or spec.finetune_prefixes)
    peak = config.finetune_learning_rate if phase == PHASE_FINETUNE else config.learning_rate
    extraction_seconds = 0.0
    if phase == PHASE_HEAD and config.head_mode == "cached":
        started = time.perf_counter()
        _say(verbose, f"[{phase}] computing backbone features once for {len(train)} + {len(val)} images", detail=True)
        # One pass over train and validation together: a single traced predict function.
        features = compute_features(
            model, np.concatenate([train.images, val.images]), batch_size=config.batch_size, progress=verbose == 1
        )
        x_train, x_val = features[: len(train)], features[len(train):]
        extraction_seconds = time.perf_counter() - started
        fit_model = head_model(model)
    else:
        x_train, x_val, fit_model = train.images, val.images, model
    _compile(fit_model, config, peak)

    steps_per_epoch = math.ceil(len(x_train) / config.batch_size)
    controller = _phase_controller_class()(
        folder, phase, epochs, steps_per_epoch, peak, config.warmup_fraction, config.monitor, config.patience,
        epoch_offset, budget,
    )
    controller.set_model(fit_model)
    controller.restore()
    # Training time spent on this phase by earlier, interrupted attempts.
    earlier_seconds = float(controller.state["elapsed_s"])
    if controller.initial_epoch and not controller.finished:
        _say(verbose, f"[{phase}] resuming after epoch {controller.initial_epoch} of {epochs}")
    if controller.initial_epoch < epochs and not controller.finished:
        trainable = sum(int(np.prod(weight.shape)) for weight in fit_model.trainable_weights)
        _say(verbose, f"[{phase}] training {trainable:,} parameters for up to {epochs} epochs", detail=True)
        bars = []
        if verbose == PHASE_BARS:
            bars = [_phase_bar_class()(controller, epochs, f"[{phase}]")]
        fit_model.fit(
            x_train, y_train, validation_data=(x_val, y_val), batch_size=config.batch_size, epochs=epochs,
            initial_epoch=controller.initial_epoch, class_weight=class_weight, shuffle=True,
            verbose=0 if verbose == PHASE_BARS else verbose, callbacks=[controller, *bars, *(callbacks or [])],
        )
    controller.restore_best()
    state = controller.state
    record = {
        "name": phase,
        "epochs_planned": int(epochs),
        "epochs_run": len(state["history"]),
        "best_epoch": state["best_epoch"],
        "best_" + config.monitor: state["best_value"],
        "stopped_early": state["stopped_early"],
        "out_of_time": state["out_of_time"],
        "budget_s": state["budget_s"],
        "peak_learning_rate": peak,
        "head_mode": config.head_mode if phase == PHASE_HEAD else None,
        "feature_extraction_s": round(extraction_seconds, 3) if extraction_seconds else None,
        "trainable_params": int(sum(np.prod(weight.shape) for weight in model.trainable_weights)),
        "seconds": earlier_seconds,  # train_model adds this attempt's wall time
        "history": state["history"],
    }
    if verbose == PHASE_BARS:
        summary = _phase_summary(phase, record, config.monitor, float(state["elapsed_s"]))
        if extraction_seconds:
            summary += f" (+{extraction_seconds:.0f} s computing the backbone features once)"
        print(summary + f"; {record['trainable_params']:,} trainable parameters", flush=True)
    return record


def _compile(model, config: TrainConfig, learning_rate: float) -> None:
    import keras

    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            learning_rate=learning_rate, momentum=0.9, nesterov=True, weight_decay=config.weight_decay
        )
    else:
        optimizer = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=config.weight_decay)
    optimizer.exclude_from_weight_decay(var_names=list(NO_WEIGHT_DECAY))
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit_compile,
    )


def _phase_budget(config: TrainConfig, wall_time: dict, epochs: int, later_epochs: int) -> float | None:
    """Seconds this phase may use: the time left, shared with later phases by epoch count."""
    if config.max_minutes is None:
        return None
    left = config.max_minutes * 60.0 - sum(wall_time.values())
    return max(left, 1.0) * epochs / (epochs + later_epochs)


def _class_weight(labels, num_classes: int) -> dict[int, float]:
    from fer_utils import data

    return data.class_weights(labels, num_classes=num_classes)


def _check_splits(train, val) -> None:
    for name, split in (("train", train), ("val", val)):
        if len(split) == 0:
            raise ValueError(f"The {name} split is empty; training needs images in both train and val.")
    if tuple(train.class_names) != tuple(val.class_names):
        raise ValueError(f"train and val have different class names: {train.class_names} vs {val.class_names}.")


def _open_run_state(run_dir: Path, config: TrainConfig, data_fingerprint: str, overwrite: bool) -> dict:
    """Read RUN_DIR/backup/state.json (or start a new state, not yet written), refusing to mix runs.

    A stored state must have the same settings (the time budget may change) and the same training
    data (`data_fingerprint`, a hash of the train and validation images and labels).
    """
    path = run_dir / BACKUP_DIR / STATE_FILE
    if overwrite:
        runs.remove_artifacts(run_dir)
        _remove_checkpoints(run_dir / BACKUP_DIR)
    # Any temporary here is an orphan of a killed write: this process holds the folder's lock.
    for folder in (run_dir, run_dir / BACKUP_DIR, *(run_dir / BACKUP_DIR / phase for phase in PHASES)):
        files.remove_stale_temporaries(folder, older_than_s=0)
    current = config.to_dict()
    if path.is_file():
        state = _read_state(path)
        stored = dict(state.get("config", {}))
        # The time budget may change between attempts (e.g. a longer session); nothing else may.
        differences = sorted(
            key for key in set(stored) | set(current)
            if key != "max_minutes" and stored.get(key) != current.get(key)
        )
        if differences:
            raise ValueError(
                f"'{run_dir}' holds a run with different settings ({', '.join(differences)}). "
                "Use a new --out folder, or pass --overwrite to discard the old run."
            )
        stored_fingerprint = state.get("data_fingerprint")
        if stored_fingerprint is not None and stored_fingerprint != data_fingerprint:
            raise ValueError(
                f"'{run_dir}' holds a run trained on other data (training-data fingerprint {stored_fingerprint} "
                f"there, {data_fingerprint} now). Pass the same --data to resume it, use a new --out folder, "
                "or pass --overwrite to discard the old run."
            )
        state["config"] = current
        state["data_fingerprint"] = data_fingerprint
        return state
    if runs.is_run_dir(run_dir):
        raise ValueError(
            f"'{run_dir}' already holds a model.keras from another run. Use a new --out folder, or pass "
            "--overwrite to replace it."
        )
    return {"config": current, "data_fingerprint": data_fingerprint, "completed": {}, "complete": False}


def _read_state(path: Path) -> dict:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        state = None
    if not isinstance(state, dict) or not isinstance(state.get("completed", {}), dict):
        # Hand-edited or damaged: resuming from it would be a guess.
        raise ValueError(
            f"'{path}' is not a readable training state. Pass --overwrite to discard the interrupted run, "
            "or use a new --out folder."
        )
    return state


def _holds_training_state(run_dir: Path) -> bool:
    """True for a run folder written before run folders had a marker: its backup/state.json is ours."""
    try:
        state = json.loads((run_dir / BACKUP_DIR / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and {"config", "completed"} <= set(state)


def _is_checkpoint_name(name: str) -> bool:
    """True for the files this module writes under RUN_DIR/backup (and temporaries of killed writes)."""
    return bool(_CHECKPOINT_NAME.fullmatch(name)) or files.is_temporary_name(name)


def _remove_checkpoints(folder: Path) -> None:
    """Delete the checkpoint files under `folder` (backup/ or one phase's folder), then the folders
    that are left empty. Files the project did not write stay where they are."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.is_dir() and entry.name in PHASES:
            _remove_checkpoints(entry)
        elif entry.is_file() and _is_checkpoint_name(entry.name):
            entry.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()  # only succeeds when nothing else is in it


def _history_frame(rows):
    import pandas as pd

    return pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))


def _validation_metrics(model, val, batch_size: int) -> dict:
    """Accuracy, macro-F1, balanced accuracy and per-class recall on the validation split."""
    from sklearn.metrics import balanced_accuracy_score, f1_score, log_loss, recall_score

    from fer_utils import models

    probabilities = models.predict(model, val.images, batch_size=max(batch_size, 256))
    predictions = probabilities.argmax(axis=1)
    labels = np.arange(len(val.class_names))
    recalls = recall_score(val.labels, predictions, labels=labels, average=None, zero_division=0)
    return {
        "split": "val (carved from train)",
        "num_images": int(len(val)),
        "accuracy": float(np.mean(predictions == val.labels)),
        "macro_f1": float(f1_score(val.labels, predictions, labels=labels, average="macro", zero_division=0)),
        "balanced_accuracy": float(balanced_accuracy_score(val.labels, predictions)),
        "log_loss": float(log_loss(val.labels, np.clip(probabilities, 1e-7, 1.0), labels=labels)),
        "recall_per_class": {name: float(value) for name, value in zip(val.class_names, recalls)},
    }


def _weights_provenance(weights, spec) -> dict:
    from fer_utils import models

    if weights is None:
        how = "trained from scratch" if not spec.pretrained else "random initialisation"
        return {"source": "none", "description": how}
    if weights == "imagenet":
        local_file = models.find_pretrained_weights(spec.name)
        return {
            "source": "imagenet",
            "description": f"keras.applications.{spec.application} ImageNet weights ({spec.weights_file})",
            # A local copy (FER_WEIGHTS_DIR, Kaggle input, Keras cache) or Keras's verified download.
            "file": str(local_file) if local_file is not None else "downloaded by Keras",
        }
    path = Path(weights).expanduser()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"source": "file", "path": str(path.resolve()), "sha256": digest}


def _array_fingerprint(train, val) -> str:
    digest = hashlib.sha256()
    for split in (train, val):
        digest.update(np.ascontiguousarray(split.images).tobytes())
        digest.update(np.ascontiguousarray(split.labels).tobytes())
    return "arrays-" + digest.hexdigest()[:16]


PHASE_BARS = 3  # the verbosity code of progress="phase"


def _verbosity(progress) -> int:
    if progress == "phase":
        return PHASE_BARS
    if isinstance(progress, bool):
        return 1 if progress else 0
    if progress not in (0, 1, 2):
        raise ValueError(f"progress must be 'phase', True, False, 0, 1 or 2; got {progress!r}.")
    return int(progress)


def _say(verbose: int, message: str, detail: bool = False) -> None:
    """Print `message` unless silent; `detail` messages only in the per-epoch modes (1 and 2)."""
    if verbose and not (detail and verbose == PHASE_BARS):
        print(message, flush=True)


def _phase_bar_class():
    import keras

    from fer_utils import progress as progress_bars

    class PhaseBar(keras.callbacks.Callback):
        """One progress bar for a whole phase (one step per epoch), closed by a summary line."""

        def __init__(self, controller, epochs, description):
            super().__init__()
            self.controller, self.epochs, self.description = controller, epochs, description
            self.bar = None

        def on_train_begin(self, logs=None):
            self.bar = progress_bars.bar(total=self.epochs, initial=self.controller.initial_epoch,
                                         desc=self.description, unit="epoch", leave=True)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            shown = {key: f"{logs[key]:.3f}" for key in ("loss", "val_accuracy") if key in logs}
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(1)

        def on_train_end(self, logs=None):
            if self.bar is not None:
                self.bar.close()

    return PhaseBar


def _phase_summary(phase: str, record: dict, monitor: str, seconds: float) -> str:
    """`[head] 60 epochs in 12 s; best val_accuracy 0.842 at epoch 57 (stopped early)`."""
    best = record.get("best_" + monitor)
    epochs = record["epochs_run"]
    text = f"[{phase}] {epochs} epoch{'' if epochs == 1 else 's'} in {seconds:.0f} s"
    if best is not None:
        text += f"; best {monitor} {best:.3f} at epoch {record['best_epoch']}"
    notes = [note for note, flag in (("stopped early", record["stopped_early"]), ("out of time", record["out_of_time"])) if flag]
    return text + (f" ({', '.join(notes)})" if notes else "")


def train_from_directory(data_path, run_dir, config: TrainConfig, progress=True, cache=True,
                         overwrite: bool = False, callbacks=None) -> Path:
    """Load a dataset, carve the validation split from train, and train (`train_model`).

    `data_path` is anything `fer_utils.data.load_dataset` reads (a root with train/ and test/, or
    fer2013.csv). A `val/` split folder, when present, is used as the validation split; otherwise
    `config.val_fraction` of train is held out, stratified by class and seeded by `config.seed`.
    The test split is never loaded into training.
    """
    from fer_utils import data

    # A typo or a wrong --out folder fails before any image is decoded.
    validate_config(config)
    runs.check_run_folder(run_dir, recognise=_holds_training_state)
    root = Path(data_path).expanduser()
    if root.is_dir() and (root / "train").is_dir():
        # Decode only what training uses: the test split stays on disk, unread.
        dataset = {"train": data.load_split(root / "train", cache=cache, progress=bool(progress))}
        if (root / "val").is_dir():
            dataset["val"] = data.load_split(root / "val", cache=cache, progress=bool(progress))
    else:
        dataset = data.load_dataset(data_path, cache=cache, progress=bool(progress))
    if "train" not in dataset:
        raise ValueError(
            f"'{data_path}' has no train split (found {sorted(dataset)}). Point --data to the folder that "
            "holds train/ (and test/), or to fer2013.csv."
        )
    if "val" in dataset:
        train, val = dataset["train"], dataset["val"]
        val_source = "val split folder"
    else:
        train, val = data.train_val_split(dataset["train"], val_fraction=config.val_fraction, seed=config.seed)
        val_source = f"{config.val_fraction:.0%} of train, stratified, seed {config.seed}"
    extra = {"data": str(Path(data_path).expanduser().resolve()), "val_source": val_source}
    return train_model(
        train, val, config, run_dir, progress=progress, fingerprint=data.dataset_fingerprint(data_path),
        callbacks=callbacks, overwrite=overwrite, extra_config=extra,
    )
