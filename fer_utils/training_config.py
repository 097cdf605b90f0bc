"""The training configuration: every choice that shapes a run, its defaults per backbone, its checks.

`TrainConfig` is the single place a training option is declared. Each field's metadata carries the
command-line flag and its help text, and `python -m fer_utils train` builds its options from them
(`cli_options`), so a new option is one new field here. `default_config` fills in the per-backbone
defaults; `validate_config` says what is inconsistent and how to fix it. Nothing here imports
Keras.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Callable

from fer_utils.augmentation import AugmentationConfig

PHASE_HEAD = "head"
PHASE_FINETUNE = "finetune"
PHASE_END_TO_END = "end_to_end"
PHASES = (PHASE_HEAD, PHASE_FINETUNE, PHASE_END_TO_END)
HEAD_MODES = ("cached", "images")
CLASS_WEIGHTINGS = ("none", "balanced")
OPTIMIZERS = ("adamw", "sgd")
MONITORS = ("val_accuracy", "val_loss")


def _weights_value(text: str) -> str | None:
    return None if text.lower() == "none" else text


def _prefix_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


AUGMENTATION_STRENGTHS = ("rotation", "zoom", "translation", "contrast")


def _augmentation_strengths(text: str) -> dict:
    """'rotation=0.05,zoom=0.1' -> {"rotation": 0.05, "zoom": 0.1}: the transforms to change (others keep the default)."""
    changes = {}
    for part in (part.strip() for part in text.split(",") if part.strip()):
        key, equals, value = part.partition("=")
        key = key.strip()
        try:
            if not equals or key not in ("flip",) + AUGMENTATION_STRENGTHS:
                raise ValueError
            changes[key] = _flip_value(value) if key == "flip" else float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"'{part}' is not NAME=VALUE with NAME one of flip, {', '.join(AUGMENTATION_STRENGTHS)} "
                "(e.g. --augmentation rotation=0.05,zoom=0.1,flip=true)."
            ) from None
        if key != "flip" and not 0.0 <= changes[key] < 1.0:
            raise argparse.ArgumentTypeError(f"augmentation {key} must be in [0, 1), got {changes[key]}.")
    if not changes:
        raise argparse.ArgumentTypeError("--augmentation needs at least one NAME=VALUE (e.g. rotation=0.05).")
    return changes


def _flip_value(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false", "1", "0", "on", "off"):
        raise ValueError(text)
    return lowered in ("true", "1", "on")


AT_LEAST_0 = (0, None, True, True)
AT_LEAST_1 = (1, None, True, True)
POSITIVE = (0, None, False, True)
FRACTION = (0, 1, True, False)  # 0 <= value < 1


def _option(flag: str, help: str, parse: Callable[[str], Any] | type | None = None, choices=None, bounds=None,
            **field_kwargs):
    """A dataclass field whose metadata declares its command-line option.

    `parse` turns the option's text into the value (None: an on/off switch); `bounds` is
    (low, high, low allowed, high allowed) for a number, checked before any command runs.
    """
    metadata = {"flag": flag, "help": help, "parse": parse, "choices": choices, "bounds": bounds}
    return dataclasses.field(metadata=metadata, **field_kwargs)


@dataclasses.dataclass
class TrainConfig:
    """Every choice that shapes a training run; `default_config` fills in per-backbone defaults.

    Each field's help text is in its metadata (`cli_options`); the ones without an option:
        augmentation: Strength of each augmentation transform (`AugmentationConfig`).
        jit_compile: Passed to `model.compile`; "auto" lets Keras use XLA on GPU where every
            layer supports it.
    """

    backbone: str = "vgg16"
    weights: str | None = _option(
        "--weights", "imagenet | none | PATH to a weights file (default: imagenet, none for small_cnn).",
        _weights_value, default="imagenet",
    )
    init_from: str | None = _option(
        "--init-from", "Start from the weights of an earlier model of the same architecture: a run folder, a "
        ".keras file or builtin when the shipped model is one network (a warm restart with a fresh schedule; default: "
        "the backbone's initial weights).",
        str, default=None,
    )
    img_size: int | None = _option(
        "--img-size", "Backbone input size in px (default: 48 on CPU, 96 vgg16/resnet50, 160 efficientnetb0 on GPU).",
        int, bounds=AT_LEAST_1, default=None,
    )
    epochs_head: int = _option("--epochs-head", "Head-phase epochs of a pretrained backbone (default 10).", int, bounds=AT_LEAST_0, default=10)
    epochs_finetune: int = _option("--epochs-finetune", "Fine-tuning epochs, 0 to skip (default 10).", int, bounds=AT_LEAST_0, default=10)
    epochs_end_to_end: int = _option("--epochs", "small_cnn: end-to-end epochs (default 30).", int, bounds=AT_LEAST_1, default=0)
    head_mode: str = _option(
        "--head-mode",
        "Head phase on backbone features computed once (cached, fast, the default) or on augmented images "
        "through the frozen backbone every epoch (images: slower, the head also sees augmentation).",
        str, HEAD_MODES, default="cached",
    )
    batch_size: int = _option("--batch-size", "Global batch size (default 64).", int, bounds=AT_LEAST_1, default=64)
    learning_rate: float = _option(
        "--learning-rate", "Peak learning rate of the head / end-to-end phase (default 1e-3, 3e-3 small_cnn).",
        float, bounds=POSITIVE, default=1e-3,
    )
    finetune_learning_rate: float = _option(
        "--finetune-learning-rate", "Peak learning rate of fine-tuning (default 1e-4).", float, bounds=POSITIVE, default=1e-4
    )
    warmup_fraction: float = _option(
        "--warmup-fraction", "Share of each phase's steps warming the learning rate up linearly before its "
        "cosine decay to zero (default 0.05).", float, bounds=FRACTION, default=0.05,
    )
    weight_decay: float = _option(
        "--weight-decay", "Decoupled (AdamW / SGD) weight decay of kernels (default 1e-4); biases and "
        "BatchNorm are exempt.", float, bounds=AT_LEAST_0, default=1e-4,
    )
    optimizer: str = _option("--optimizer", "adamw, or sgd with Nesterov momentum 0.9.", str, OPTIMIZERS, default="adamw")
    label_smoothing: float = _option("--label-smoothing", "Label smoothing of the cross-entropy (default 0.1).",
                                     float, bounds=FRACTION, default=0.1)
    head_units: int = _option("--head-units", "Width of the head's Dense layer (default 128).", int, bounds=AT_LEAST_1, default=128)
    dropout: float = _option("--dropout", "Head dropout rate (default 0.5, 0.2 small_cnn).", float, bounds=FRACTION, default=0.5)
    head_batchnorm: bool = _option(
        "--head-batchnorm", "Standardise the pooled features before the head (needed for random-weight "
        "backbones; off by default).", default=False,
    )
    augment: bool = _option("--augment", "Random augmentation inside the model during training (on by default).",
                            default=True)
    augmentation: AugmentationConfig = _option(
        "--augmentation", "Strengths to change, e.g. rotation=0.05,zoom=0.1,translation=0.1,contrast=0.1,flip=true "
        "(fractions in [0, 1): rotation of a full turn, zoom and shift of the image size; unnamed ones keep the "
        "backbone's default: rotation 0.025, zoom 0.05, translation 0.08, contrast 0 for small_cnn). A transform "
        "switched on or off changes the model's layers, so --init-from needs the same ones on.",
        _augmentation_strengths, default_factory=AugmentationConfig,
    )
    class_weights: str = _option(
        "--class-weights", "none (plain cross-entropy, the default: FER2013's headline metric is accuracy) or "
        "balanced (inverse class frequency: more recall on the rare classes, less accuracy).",
        str, CLASS_WEIGHTINGS, default="none",
    )
    teachers: tuple[str, ...] | None = _option(
        "--teachers", "Distil: comma-separated run folders or builtin, validated on the same split (a bare "
        ".keras file records no split and is refused); each training image's target blends its label with "
        "their mean flip-averaged probabilities (default: labels only).", _prefix_list, default=None,
    )
    teacher_weight: float = _option(
        "--teacher-weight", "Share of the teachers' probabilities in the targets with --teachers (default 0.5).",
        float, bounds=(0, 1, True, True), default=0.5,
    )
    finetune_prefixes: tuple[str, ...] | None = _option(
        "--finetune-layers", "Comma-separated layer-name prefixes unfrozen for fine-tuning "
        "(default: block5 / conv5 / block7,top).", _prefix_list, default=None,
    )
    val_fraction: float = _option("--val-fraction", "Share of train held out, stratified, for validation "
                                  "(default 0.1).", float, bounds=(0, 1, False, False), default=0.1)
    monitor: str = _option("--monitor", "What early stopping and the best checkpoint follow (default val_accuracy).",
                           str, MONITORS, default="val_accuracy")
    patience: int = _option("--patience", "Early-stopping patience in epochs, 0 = off (default 5, 10 small_cnn).",
                            int, bounds=AT_LEAST_0, default=5)
    max_minutes: float | None = _option(
        "--max-minutes", "Time budget of all epochs together (and of the teachers' predictions with --teachers): "
        "the learning-rate schedule follows steps or time, whichever runs out first, so it still anneals, and "
        "training stops cleanly.", float, bounds=POSITIVE, default=None,
    )
    seed: int = _option("--seed", "Seed of weights, shuffling, augmentation and the validation split (default 42).",
                        int, bounds=AT_LEAST_0, default=42)
    mixed_precision: bool | None = _option(
        "--mixed-precision", "float16 compute on a GPU (default: on when a GPU is present; a CPU runs float32).",
        default=None,
    )
    jit_compile: str | bool = "auto"
    name: str | None = _option("--name", "Display name of the run (default: the folder's name).", str, default=None)

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field."""
        values = dataclasses.asdict(self)
        values["augmentation"] = self.augmentation.to_dict()
        values["weights"] = None if self.weights is None else str(self.weights)
        for key in ("finetune_prefixes", "teachers"):
            if getattr(self, key) is not None:
                values[key] = list(getattr(self, key))
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Rebuild a config from `to_dict`'s output (unknown keys are an error)."""
        values = dict(values)
        if isinstance(values.get("augmentation"), dict):
            values["augmentation"] = AugmentationConfig(**values["augmentation"])
        for key in ("finetune_prefixes", "teachers"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        if isinstance(values.get("class_weights"), bool):  # configs written when this was a switch
            values["class_weights"] = "balanced" if values["class_weights"] else "none"
        return cls(**values)


def cli_options() -> list[dataclasses.Field]:
    """The `TrainConfig` fields that are command-line options, in declaration order.

    Each one's `metadata` has `flag`, `help`, `parse` (str -> value; None for an on/off switch,
    which gets `--flag` / `--no-flag`) and `choices`.
    """
    return [field for field in dataclasses.fields(TrainConfig) if "flag" in field.metadata]


def default_config(backbone: str, **overrides) -> TrainConfig:
    """The recommended `TrainConfig` for `backbone`, with `overrides` applied on top.

    Pretrained backbones: 10 head epochs on cached features, then 10 fine-tuning epochs at a peak
    learning rate of 1e-4. `small_cnn`: 30 end-to-end epochs with AdamW at 3e-3, batch 64,
    dropout 0.2 and milder augmentation. Every backbone trains with plain cross-entropy
    (class_weights="none"); class_weights="balanced" trades plain accuracy for recall on the rare
    classes (on small_cnn in 20 CPU minutes: about -5 points of accuracy for at most +1 point of
    balanced accuracy).
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
    if isinstance(overrides.get("augmentation"), dict):  # the command line names only the strengths it changes
        base = values.get("augmentation", AugmentationConfig())
        overrides = {**overrides, "augmentation": dataclasses.replace(base, **overrides["augmentation"])}
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
    _check_epochs(config, spec)
    for name, allowed in (("optimizer", OPTIMIZERS), ("head_mode", HEAD_MODES), ("monitor", MONITORS),
                          ("class_weights", CLASS_WEIGHTINGS)):
        if getattr(config, name) not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got '{getattr(config, name)}'.")
    if config.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {config.batch_size}.")
    for name in ("label_smoothing", "warmup_fraction", "dropout"):
        if not 0.0 <= getattr(config, name) < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {getattr(config, name)}.")
    if config.max_minutes is not None and config.max_minutes <= 0:
        raise ValueError(f"max_minutes must be positive (or None for no budget), got {config.max_minutes}.")
    if config.learning_rate <= 0 or config.finetune_learning_rate <= 0:
        raise ValueError("Learning rates must be positive.")
    if config.img_size is not None and int(config.img_size) < spec.min_img_size:
        raise ValueError(
            f"img_size={config.img_size} is too small for {spec.name}: it needs at least {spec.min_img_size} px "
            "(--img-size). Use 48 (FER's native size) or larger."
        )
    if config.head_units < 1:
        raise ValueError(f"head_units must be >= 1, got {config.head_units}.")
    if not 0.0 < config.val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {config.val_fraction}.")
    if config.patience < 0 or config.weight_decay < 0:
        raise ValueError("patience and weight_decay must be >= 0.")
    for name in AUGMENTATION_STRENGTHS:
        if not 0.0 <= getattr(config.augmentation, name) < 1.0:
            raise ValueError(f"augmentation.{name} must be in [0, 1), got {getattr(config.augmentation, name)}.")
    models.check_weights(spec.name, config.weights)
    if not 0.0 <= config.teacher_weight <= 1.0:
        raise ValueError(f"teacher_weight must be in [0, 1], got {config.teacher_weight}.")
    if config.teachers is not None:
        if isinstance(config.teachers, str) or not config.teachers:
            raise ValueError(f"teachers must be a non-empty tuple of run folders or 'builtin', got {config.teachers!r} "
                             "(--teachers RUN,builtin).")
        if config.class_weights != "none":
            # Keras picks each image's class weight by its target's largest entry, the teacher's class.
            raise ValueError("class_weights='balanced' cannot be combined with teachers: the soft targets hide the "
                             "label Keras weights by. Drop --class-weights or --teachers.")
    for teacher in config.teachers or ():
        if teacher != "builtin" and not Path(teacher).expanduser().exists():
            raise FileNotFoundError(
                f"Teacher '{teacher}' does not exist (--teachers). Pass run folders or 'builtin', "
                "separated by commas."
            )
    if config.init_from == "builtin":
        from fer_utils import pretrained

        if pretrained.is_ensemble():
            raise pretrained.single_network_error("the start of a warm restart (--init-from)")
    if config.init_from is not None and config.init_from != "builtin" and not Path(config.init_from).expanduser().exists():
        raise FileNotFoundError(
            f"init_from '{config.init_from}' does not exist (--init-from). Pass a run folder, a .keras file or "
            "'builtin' whose model has the architecture being trained."
        )


def _check_epochs(config: TrainConfig, spec) -> None:
    """Pretrained backbones train in two phases, small_cnn in one: the epoch fields must match."""
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


def planned_phases(config: TrainConfig) -> list[tuple[str, int]]:
    """The phases a config runs, in order, with their epoch counts (phases with 0 epochs dropped)."""
    from fer_utils import models

    if not models.get_spec(config.backbone).pretrained:
        return [(PHASE_END_TO_END, int(config.epochs_end_to_end))]
    phases = [(PHASE_HEAD, int(config.epochs_head)), (PHASE_FINETUNE, int(config.epochs_finetune))]
    return [(name, epochs) for name, epochs in phases if epochs > 0]
