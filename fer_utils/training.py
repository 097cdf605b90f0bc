"""Training: the one function the command line and the notebooks call, `train`.

A run has one or two phases:

- Pretrained backbones (`vgg16`, `resnet50`, `efficientnetb0`):
  1. "head": the backbone is frozen and only the head learns. By default ("cached") the backbone
     runs once over the train and validation images and the head trains on those cached
     features; the head's layers are the model's own layer objects, so the trained head is in the
     full model with nothing to copy. The per-epoch image path ("images") feeds augmented images
     through the frozen backbone every epoch.
  2. "finetune": the top blocks of the backbone are unfrozen (BatchNorm stays frozen) and trained
     with a low, cosine-decayed learning rate.
- `small_cnn`: one "end_to_end" phase, every layer trained from scratch.

`train` owns the split policy (`training_splits`): the validation split is a `val/` folder when the
data has one, otherwise a stratified, seeded share of train. Model selection (early stopping, best
weights) uses it; the test split is never loaded. Every epoch leaves a checkpoint under
RUN_DIR/backup (`fer_utils.checkpoints`), so re-running the same call continues from there. The
finished run folder is written by `fer_utils.runs.save_run` (model.keras, history.csv,
config.json, val_metrics.json); config.json's `data` entry says where the data came from, in one
shape for every caller (`data_provenance`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import time
from pathlib import Path

import numpy as np

from fer_utils import checkpoints, distillation, lineage, phases, runs
from fer_utils.training_config import (  # noqa: F401  (the public names of a training config)
    PHASE_END_TO_END,
    PHASE_FINETUNE,
    PHASE_HEAD,
    TrainConfig,
    default_config,
    planned_phases,
    validate_config,
)

HISTORY_COLUMNS = ("epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")
# Variables that AdamW does not decay: biases and BatchNorm's scale and offset.
NO_WEIGHT_DECAY = ("bias", "gamma", "beta")
PHASE_BARS = 3  # the verbosity code of progress="phase"


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """The train and validation splits of a run, and where they came from.

    `provenance` is what config.json records under `data` (see `data_provenance`).
    """

    train: object  # fer_utils.data.Split
    val: object  # fer_utils.data.Split
    provenance: dict
    # The teachers' mean probabilities on `train`'s images when the run distils (`fer_utils.distillation`).
    teacher_probs: np.ndarray | None = None


@dataclasses.dataclass
class Inheritance:
    """The models a run starts from or learns from, loaded and checked once before anything is written.

    Training drops each model once it has used it (the teachers after their predictions, the start
    after its weights are copied), so they do not hold memory through the epochs.

    Attributes:
        start: The `--init-from` model as a `runs.Run`, or None.
        teachers: `[(source, runs.Run), ...]` of `--teachers` (empty without).
        lineage: What config.json records under `lineage` (`fer_utils.lineage`).
    """

    start: object = None
    teachers: list = dataclasses.field(default_factory=list)
    lineage: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    """What a config resolves to on this machine, computed once before training starts.

    Attributes:
        config: The validated `TrainConfig`.
        spec: The backbone's registry entry (`fer_utils.models.BackboneSpec`).
        img_size: The input size the backbone sees.
        mixed_precision: float16 compute (only ever on a GPU).
        phases: (phase name, epochs) in order.
        class_names: Output order of the model (the training data's).
        class_weight: Loss weight per class index, or None for plain cross-entropy.
        verbose: Progress display code (0 silent, 1/2 Keras per epoch, PHASE_BARS one bar per phase).
    """

    config: TrainConfig
    spec: object
    img_size: int
    mixed_precision: bool
    phases: tuple
    class_names: tuple
    class_weight: dict | None
    verbose: int

    def build_arguments(self) -> dict:
        """The keyword arguments of `fer_utils.models.build_model` for this run (weights aside)."""
        config = self.config
        return dict(
            backbone=self.spec.name, img_size=self.img_size, head_units=config.head_units, dropout=config.dropout,
            head_batchnorm=config.head_batchnorm, augment=config.augment, augmentation=config.augmentation,
            seed=config.seed, class_names=self.class_names,
        )


def resolve_plan(config: TrainConfig, train, progress=True, on_gpu: bool | None = None) -> TrainingPlan:
    """Resolve `config` against this machine and the training split: image size, precision, phases."""
    from fer_utils import backend, data, models

    validate_config(config)
    spec = models.get_spec(config.backbone)
    if on_gpu is None:
        on_gpu = bool(backend.gpu_names())
    class_names = tuple(train.class_names)
    use_mixed_precision = on_gpu if config.mixed_precision is None else bool(config.mixed_precision and on_gpu)
    class_weight = None
    if config.class_weights == "balanced":
        class_weight = data.class_weights(train.labels, num_classes=len(class_names))
    return TrainingPlan(
        config=config,
        spec=spec,
        img_size=int(config.img_size or models.default_img_size(spec.name, on_gpu=on_gpu)),
        mixed_precision=use_mixed_precision,
        phases=tuple(planned_phases(config)),
        class_names=class_names,
        class_weight=class_weight,
        verbose=_verbosity(progress),
    )


# =============================================================================================
# The data of a run: the split policy and its provenance
# =============================================================================================
def training_splits(data, val_fraction: float = 0.1, seed: int = 42, cache=True, progress: bool = True) -> TrainingData:
    """Load the train and validation splits of `data` and record where they came from.

    `data` is a data location (a dataset root with train/, a fer2013.csv, or the
    `DatasetLocation` that `fer_utils.data.find_dataset` returns), a train `Split` (its validation
    share is carved off), a (train, val) pair of Splits, or a `TrainingData` (returned as it is).
    A `val/` folder, when the root has one, is the validation split; otherwise `val_fraction` of
    train is held out, stratified by class and seeded by `seed`. The test split stays on disk.
    """
    from fer_utils import data as data_module

    if isinstance(data, TrainingData):
        return data
    if isinstance(data, tuple) and len(data) == 2:
        train, val = data
        return TrainingData(train, val, data_provenance(None, "in-memory splits", train, val, "given by the caller"))
    if isinstance(data, data_module.Split):
        train, val = data_module.train_val_split(data, val_fraction=val_fraction, seed=seed)
        return TrainingData(train, val, data_provenance(None, "in-memory split", train, val,
                                                        _carved(val_fraction, seed)))
    if isinstance(data, data_module.DatasetLocation):
        path, source = Path(data.path), data.source
    elif isinstance(data, (str, os.PathLike)):
        path, source = Path(data).expanduser(), "argument"
    else:
        raise ValueError(
            f"Expected a dataset path, a DatasetLocation, a train Split or a (train, val) pair; "
            f"got {type(data).__name__}."
        )
    train = _load_train(data_module, path, cache, progress)
    val_folder = path / "val"
    if path.is_dir() and val_folder.is_dir():
        val = data_module.load_split(val_folder, cache=cache, progress=progress)
        validation = "val/ split folder"
    else:
        train, val = data_module.train_val_split(train, val_fraction=val_fraction, seed=seed)
        validation = _carved(val_fraction, seed)
    provenance = data_provenance(path, source, train, val, validation,
                                 fingerprint=data_module.dataset_fingerprint(path))
    return TrainingData(train, val, provenance)


def _load_train(data_module, path: Path, cache, progress: bool):
    try:
        return data_module.load_labelled(path, split="train", cache=cache, progress=progress)
    except ValueError as error:
        if "has no 'train' split" not in str(error):
            raise
        raise ValueError(
            f"'{path}' has no train split. Point --data to the folder that holds train/ (and test/), "
            "or to fer2013.csv."
        ) from None


def _carved(val_fraction: float, seed: int) -> str:
    return f"{val_fraction:.0%} of train, stratified, seed {seed}"


def data_provenance(path, source: str, train, val, validation: str, fingerprint: str | None = None) -> dict:
    """The `data` entry of config.json: the one shape every run records, whoever started it.

    Keys: `path` (absolute, or None for in-memory splits), `source` (how the path was found: "demo",
    "kaggle-input", "argument", ...), `fingerprint` (of the dataset folder or file; of the arrays for
    in-memory splits), `validation` (how the validation split was made), `train_size`,
    `val_size` and `train_class_counts`.
    """
    return {
        "path": None if path is None else str(Path(path).expanduser().resolve()),
        "source": str(source),
        "fingerprint": fingerprint or _array_fingerprint(train, val),
        "validation": validation,
        "train_size": int(len(train)),
        "val_size": int(len(val)),
        "train_class_counts": np.bincount(train.labels, minlength=len(train.class_names)).tolist(),
    }


# =============================================================================================
# Training
# =============================================================================================
def train(data, config: TrainConfig, run_dir, progress=True, cache=True, overwrite: bool = False,
          callbacks=None) -> Path:
    """Train `config` on `data`, select the model on its validation split, write the run folder.

    Args:
        data: Anything `training_splits` takes: a dataset path or `DatasetLocation` (the split
            policy applies: `val/` folder, else `config.val_fraction` of train, seeded), a train
            Split, a (train, val) pair of Splits, or a `TrainingData`. Pass no test data here.
        config: A `TrainConfig` (see `default_config`).
        run_dir: The run folder: new, empty, or one written by training (it has a `.fer-run`
            marker). If it holds an unfinished run with the same config and data, training
            resumes from its last completed epoch; a finished one is returned as it is.
        progress: "phase" (one progress bar per phase, then its summary line: what the notebooks
            and the command line show), Keras progress bars (True or 1), one line per epoch (2), or
            silence (False). The per-epoch numbers are always in the run's `history.csv`.
        cache: Read and write the decoded-data cache when `data` is a location.
        overwrite: Discard the run `run_dir` holds (only the files training wrote) and start over.
        callbacks: Extra Keras callbacks for every `fit` call.

    Returns:
        `run_dir` as a Path.

    Raises:
        ValueError: an inconsistent config; `run_dir` holds a run with other settings or other
            data, or someone else's files (`runs.RunFolderError`), or another process is training
            into it. Nothing is written to `run_dir` before these checks pass.
    """
    # A typo or a wrong --out folder fails before any image is decoded.
    validate_config(config)
    _verbosity(progress)
    from fer_utils import backend

    # Before any model is loaded (the start model, teachers): it must precede the first GPU operation.
    backend.enable_memory_growth()
    run_dir = Path(run_dir)
    runs.check_run_folder(run_dir, recognise=checkpoints.holds_training_state)
    training_data = training_splits(data, config.val_fraction, config.seed, cache=cache, progress=bool(progress))
    _check_splits(training_data.train, training_data.val)
    plan = resolve_plan(config, training_data.train, progress)
    inheritance = _inheritance(config, training_data)
    arrays_fingerprint = _array_fingerprint(training_data.train, training_data.val)
    runs.claim_run_folder(run_dir, recognise=checkpoints.holds_training_state)
    with runs.run_lock(run_dir):
        run_state = checkpoints.open_run_state(run_dir, config, arrays_fingerprint, overwrite)
        if run_state.get("complete") and runs.is_run_dir(run_dir):
            _say(plan.verbose, f"{run_dir} already holds a finished run; nothing to do (pass overwrite=True to retrain).")
            return run_dir
        _check_same_inheritance(run_dir, run_state, inheritance)
        return _train_locked(training_data, plan, inheritance, run_dir, run_state, callbacks)


def _train_locked(training_data: TrainingData, plan: TrainingPlan, inheritance: Inheritance, run_dir: Path,
                  run_state: dict, callbacks) -> Path:
    """The body of `train`, run while it holds the run folder's lock."""
    from fer_utils import backend, environment, models

    backup = run_dir / checkpoints.BACKUP_DIR
    wall_time, phase_records = {}, []
    # The targets are the labels unless this run's own config names teachers. Their predictions
    # count towards the time budget and the run's wall time, over every attempt (a resumed run
    # predicts again).
    teacher_probs = None
    if inheritance.teachers:
        started = time.perf_counter()
        teacher_probs = distillation.teacher_probabilities(inheritance.teachers, training_data,
                                                           progress=bool(plan.verbose))
        inheritance.teachers = []
        run_state["teacher_seconds"] = round(run_state.get("teacher_seconds", 0.0) + time.perf_counter() - started, 3)
        wall_time["teachers"] = run_state["teacher_seconds"]
    training_data = dataclasses.replace(training_data, teacher_probs=teacher_probs)
    environment.set_seeds(plan.config.seed)
    devices = backend.distribution()
    model = _build_model(plan, devices, inheritance.start)
    inheritance.start = None
    # Written only now that the model is built: a failed build leaves nothing that blocks a retry.
    checkpoints.write_state(backup / checkpoints.STATE_FILE, run_state)

    for index, (phase, epochs) in enumerate(plan.phases):
        folder = backup / phase
        completed = run_state["completed"].get(phase)
        if completed:
            # Finished before an interruption: take its weights and history, skip the work.
            model.set_weights(checkpoints.load_arrays(folder / checkpoints.FINAL_WEIGHTS_FILE))
            wall_time[phase] = completed["seconds"]
            phase_records.append(completed)
            continue
        later_epochs = sum(later for _, later in plan.phases[index + 1:])
        step = _phase_step(plan, phase, epochs, folder, phase_records,
                           _phase_budget(plan.config, wall_time, epochs, later_epochs))
        started = time.perf_counter()
        with devices.scope():
            record = _run_phase(model, plan, step, training_data, callbacks)
        record["seconds"] = round(record["seconds"] + time.perf_counter() - started, 3)
        checkpoints.save_arrays(folder / checkpoints.FINAL_WEIGHTS_FILE, model.get_weights())
        run_state["completed"][phase] = record
        checkpoints.write_state(backup / checkpoints.STATE_FILE, run_state)
        wall_time[phase] = record["seconds"]
        phase_records.append(record)

    # Each phase restored its own best epoch. If fine-tuning never beat the head phase's best, keep
    # the head phase's weights: the run's model is the best one seen on validation, whichever phase.
    selected_phase = _best_phase(phase_records, plan.config.monitor)
    if selected_phase != phase_records[-1]["name"]:
        model.set_weights(checkpoints.load_arrays(backup / selected_phase / checkpoints.FINAL_WEIGHTS_FILE))
        _say(plan.verbose, f"[{selected_phase}] keeping this phase's weights: later phases did not improve "
                           f"{plan.config.monitor}")

    # Save a clean float32 copy: no optimizer, no mixed-precision policy, every layer as built.
    final_model = models.build_model(weights=None, **plan.build_arguments())
    final_model.set_weights(model.get_weights())
    history = _history_frame([row for record in phase_records for row in record["history"]])
    val_metrics = validation_metrics(final_model, training_data.val, plan.config.batch_size)
    wall_time["total"] = round(sum(wall_time.values()), 3)
    run_config = _run_config(plan, run_dir, training_data, phase_records, selected_phase, final_model, wall_time)
    run_config["lineage"] = inheritance.lineage
    run_config["replicas"] = devices.replicas
    runs.save_run(run_dir, final_model, run_config, history=history, val_metrics=val_metrics)
    run_state["complete"] = True
    checkpoints.write_state(backup / checkpoints.STATE_FILE, run_state)
    for phase, _ in plan.phases:
        checkpoints.remove_checkpoints(backup / phase)
    _say(plan.verbose, f"Run folder: {run_dir}  (val accuracy {val_metrics['accuracy']:.4f})", detail=True)
    return run_dir


def _inheritance(config: TrainConfig, training_data: TrainingData) -> Inheritance:
    """Load `--init-from` and `--teachers` once and check what they inherit (ValueError, see `fer_utils.lineage`)."""
    from fer_utils import loading

    start, start_lineage = None, []
    if config.init_from is not None:
        start = loading.load_model(config.init_from)
        start_lineage = lineage.lineage_of(config.init_from, start)
        lineage.check_starting_point(config.init_from, start_lineage, training_data.provenance)
    teachers = distillation.load_teachers(config.teachers, training_data) if config.teachers else []
    teacher_lineages = [lineage.lineage_of(source, teacher) for source, teacher in teachers]
    return Inheritance(start, teachers, lineage.merged(start_lineage, *teacher_lineages))


def _check_same_inheritance(run_dir: Path, run_state: dict, inheritance: Inheritance) -> None:
    """Record the start model's and teachers' weights in the run state; refuse to resume with others.

    A run folder retrained in place between two attempts keeps its name and split, so only its
    weights tell: resuming would mix epochs started from, or taught by, two different models.
    """
    current = {"init_from": _weights_fingerprint(inheritance.start.model) if inheritance.start else None,
               "teachers": [_weights_fingerprint(teacher.model) for _, teacher in inheritance.teachers]}
    stored = run_state.setdefault("inherited_weights", current)  # runs begun before this record adopt it
    if stored != current:
        changed = [name for name in current if stored.get(name) != current[name]]
        raise ValueError(
            f"'{run_dir}' was begun with other weights in {' and '.join(changed)} than those models hold now "
            "(retrained in place since?): resuming would mix two starting points. Restore those models, or pass "
            "--overwrite to start this run over."
        )


def _weights_fingerprint(model) -> str:
    return _hash_arrays("weights-", model.get_weights())


def _build_model(plan: TrainingPlan, devices, start=None):
    """The model to train, in the scope of `devices` (a `backend.Distribution`) and, on a GPU, mixed precision.

    `start` (a `runs.Run`, the loaded `--init-from`) gives its weights.
    """
    import keras

    from fer_utils import models

    previous_policy = keras.mixed_precision.global_policy()
    try:
        if plan.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        with devices.scope():
            model = models.build_model(weights=plan.config.weights, **plan.build_arguments())
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    if start is not None:
        _load_initial_weights(model, plan.config.init_from, start.model)
    return model


def _load_initial_weights(model, source, start) -> None:
    """Start `model` from the weights of `start`, the Keras model loaded from `source` (`--init-from`).

    The architectures must match array for array: a warm restart continues one model, it does not
    transplant layers between different ones.
    """
    ours, theirs = model.get_weights(), start.get_weights()
    if [weight.shape for weight in ours] != [weight.shape for weight in theirs]:
        raise ValueError(
            f"init_from '{source}' holds a model whose weights ({len(theirs)} arrays) do not match the model being "
            f"trained ({len(ours)} arrays). Pass a model of the same backbone, image size and head (--init-from)."
        )
    model.set_weights(theirs)


def _phase_step(plan: TrainingPlan, phase: str, epochs: int, folder: Path, earlier_records: list, budget_s):
    """The `callbacks.PhaseStep` of `phase`: its epochs, folder, numbering, time budget and peak rate."""
    from fer_utils.callbacks import PhaseStep

    peak = plan.config.finetune_learning_rate if phase == PHASE_FINETUNE else plan.config.learning_rate
    return PhaseStep(
        name=phase, epochs=int(epochs), folder=folder,
        epoch_offset=sum(record["epochs_run"] for record in earlier_records),
        budget_s=budget_s, peak_learning_rate=float(peak),
    )


def _run_config(plan: TrainingPlan, run_dir: Path, training_data: TrainingData, phase_records, selected_phase,
                final_model, wall_time) -> dict:
    """config.json of the finished run."""
    from fer_utils import environment, models

    return {
        "name": plan.config.name or run_dir.name,
        "backbone": plan.spec.name,
        "weights": _weights_provenance(plan.config.weights, plan.spec),
        "img_size": plan.img_size,
        "class_names": list(plan.class_names),
        "data": training_data.provenance,
        "phases": [{key: value for key, value in record.items() if key != "history"} for record in phase_records],
        "selected_phase": selected_phase,
        "hyperparameters": plan.config.to_dict(),
        "n_params": int(final_model.count_params()),
        "trainable_params": models.trainable_summary(final_model)["trainable"],
        "class_weight": plan.class_weight,
        "mixed_precision": plan.mixed_precision,
        "device": environment.device_summary(),
        "library_versions": environment.library_versions(),
        "wall_time_s": wall_time,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _best_phase(phase_records: list[dict], monitor: str) -> str:
    """Name of the phase whose best epoch scored best on `monitor` (the last one wins ties)."""
    sign = -1.0 if monitor.endswith("loss") else 1.0
    scored = [
        (sign * record["best_" + monitor], index, record["name"])
        for index, record in enumerate(phase_records)
        if record.get("best_" + monitor) is not None
    ]
    return max(scored)[2] if scored else phase_records[-1]["name"]


def _phase_inputs(model, plan: TrainingPlan, phase: str, training_data: TrainingData, verbose: int):
    """(x_train, x_val, the model `fit` trains, seconds spent computing features) for `phase`."""
    train, val = training_data.train, training_data.val
    if phase == PHASE_HEAD and plan.config.head_mode == "cached":
        started = time.perf_counter()
        _say(verbose, f"[{phase}] computing backbone features once for {len(train)} + {len(val)} images", detail=True)
        # One pass over train and validation together: a single traced predict function.
        features = phases.compute_features(
            model, np.concatenate([train.images, val.images]), batch_size=plan.config.batch_size
        )
        return features[: len(train)], features[len(train):], phases.head_model(model), time.perf_counter() - started
    return train.images, val.images, model, 0.0


def _run_phase(model, plan: TrainingPlan, step, training_data: TrainingData, callbacks) -> dict:
    """Train one phase, restore its best weights, and return its record for config.json."""
    import keras

    from fer_utils import models
    from fer_utils.callbacks import PhaseBar, PhaseController

    config, verbose, phase = plan.config, plan.verbose, step.name
    phases.set_phase_trainable(model, phase, config.finetune_prefixes or plan.spec.finetune_prefixes)
    x_train, x_val, fit_model, extraction_seconds = _phase_inputs(model, plan, phase, training_data, verbose)
    _compile(fit_model, config, step.peak_learning_rate)
    num_classes = len(plan.class_names)
    if training_data.teacher_probs is None:
        y_train = keras.utils.to_categorical(training_data.train.labels, num_classes).astype("float32")
    else:
        y_train = distillation.blended_targets(training_data.train.labels, training_data.teacher_probs,
                                               config.teacher_weight, num_classes)
    y_val = keras.utils.to_categorical(training_data.val.labels, num_classes).astype("float32")

    controller = PhaseController(step, math.ceil(len(x_train) / config.batch_size), config)
    controller.set_model(fit_model)
    controller.restore()
    # Time spent on this phase by earlier, interrupted attempts.
    earlier_seconds = float(controller.state["elapsed_s"])
    if controller.initial_epoch and not controller.finished:
        _say(verbose, f"[{phase}] resuming after epoch {controller.initial_epoch} of {step.epochs}")
    if controller.initial_epoch < step.epochs and not controller.finished:
        trainable = models.trainable_summary(fit_model)["trainable"]
        _say(verbose, f"[{phase}] training {trainable:,} parameters for up to {step.epochs} epochs", detail=True)
        bars = [PhaseBar(controller, step.epochs, f"[{phase}]")] if verbose == PHASE_BARS else []
        fit_model.fit(
            x_train, y_train, validation_data=(x_val, y_val), batch_size=config.batch_size, epochs=step.epochs,
            initial_epoch=controller.initial_epoch, class_weight=plan.class_weight, shuffle=True,
            verbose=0 if verbose == PHASE_BARS else verbose, callbacks=[controller, *bars, *(callbacks or [])],
        )
    controller.restore_best()
    record = _phase_record(step, controller.state, config, models.trainable_summary(model)["trainable"],
                           extraction_seconds, earlier_seconds)
    if verbose == PHASE_BARS:
        summary = _phase_summary(phase, record, config.monitor, float(controller.state["elapsed_s"]))
        if extraction_seconds:
            summary += f" (+{extraction_seconds:.0f} s computing the backbone features once)"
        print(summary + f"; {record['trainable_params']:,} trainable parameters", flush=True)
    return record


def _phase_record(step, state: dict, config: TrainConfig, trainable_params: int, extraction_seconds: float,
                  earlier_seconds: float) -> dict:
    """What config.json's `phases` list (and the resume state) records about a finished phase."""
    return {
        "name": step.name,
        "epochs_planned": int(step.epochs),
        "epochs_run": len(state["history"]),
        "best_epoch": state["best_epoch"],
        "best_" + config.monitor: state["best_value"],
        "stopped_early": state["stopped_early"],
        "out_of_time": state["out_of_time"],
        "budget_s": state["budget_s"],
        "peak_learning_rate": step.peak_learning_rate,
        "head_mode": config.head_mode if step.name == PHASE_HEAD else None,
        "feature_extraction_s": round(extraction_seconds, 3) if extraction_seconds else None,
        "trainable_params": int(trainable_params),
        "seconds": earlier_seconds,  # the orchestrator adds this attempt's wall time
        "history": state["history"],
    }


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


def _check_splits(train, val) -> None:
    for name, split in (("train", train), ("val", val)):
        if len(split) == 0:
            raise ValueError(f"The {name} split is empty; training needs images in both train and val.")
    if tuple(train.class_names) != tuple(val.class_names):
        raise ValueError(f"train and val have different class names: {train.class_names} vs {val.class_names}.")


def _history_frame(rows):
    import pandas as pd

    return pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))


def validation_metrics(model, val, batch_size: int = 256) -> dict:
    """val_metrics.json: accuracy, macro-F1, balanced accuracy, log loss and per-class recall on `val`."""
    from fer_utils import metrics as metrics_module
    from fer_utils import models

    probabilities = models.predict(model, val.images, batch_size=max(batch_size, 256))
    metrics = metrics_module.compute_metrics(val.labels, probabilities, val.class_names)
    matrix = metrics_module.confusion(val.labels, probabilities.argmax(axis=1), len(val.class_names))
    support = matrix.sum(axis=1)
    recalls = np.divide(np.diag(matrix), support, out=np.zeros(len(support)), where=support > 0)
    return {
        "split": "val (carved from train)",
        "num_images": int(len(val)),
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "balanced_accuracy": metrics["balanced_accuracy"],
        "log_loss": metrics["log_loss"],
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
    return _hash_arrays("arrays-", [train.images, train.labels, val.images, val.labels])


def _hash_arrays(prefix: str, arrays) -> str:
    """`prefix` + a short SHA-256 of the arrays' bytes, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return prefix + digest.hexdigest()[:16]


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


def _phase_summary(phase: str, record: dict, monitor: str, seconds: float) -> str:
    """`[head] 60 epochs in 12 s; best val_accuracy 0.842 at epoch 57 (stopped early)`."""
    best = record.get("best_" + monitor)
    epochs = record["epochs_run"]
    text = f"[{phase}] {epochs} epoch{'' if epochs == 1 else 's'} in {seconds:.0f} s"
    if best is not None:
        text += f"; best {monitor} {best:.3f} at epoch {record['best_epoch']}"
    notes = [note for note, flag in (("stopped early", record["stopped_early"]), ("out of time", record["out_of_time"])) if flag]
    return text + (f" ({', '.join(notes)})" if notes else "")
