"""What average.py and package.py share: the runs' validation split, and the figures they record on it.

Both score a model on the validation split its runs were trained with, so that mixes and members
are chosen there and never on the test folder. Training carves that split as config.json's
`data.validation` says: a dataset's own `val/` folder, or a stratified share of `train/` drawn
with a seed (`fer_utils.data.train_val_split`); this rebuilds it the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# What must match between two runs' data records for them to have used the same validation images.
SPLIT_FIELDS = ("validation", "train_size", "val_size", "train_class_counts")


def validation_split(data_root, val_fraction: float = 0.1, seed: int = 42, progress: bool = True):
    """(val Split, its record): `data_root`'s val/ folder, else `val_fraction` of train/ carved with `seed`.

    The record has the `SPLIT_FIELDS` keys, as config.json's `data` entry writes them.
    """
    from fer_utils import data

    root = Path(data_root).expanduser()
    train = data.load_labelled(root, split="train", progress=progress)
    if (root / "val").is_dir():
        val, how = data.load_split(root / "val", progress=progress), "val/ split folder"
    else:
        train, val = data.train_val_split(train, val_fraction=val_fraction, seed=seed)
        how = f"{val_fraction:.0%} of train, stratified, seed {seed}"
    record = {"validation": how, "train_size": len(train), "val_size": len(val),
              "train_class_counts": np.bincount(train.labels, minlength=len(train.class_names)).tolist()}
    return val, record


def check_same_split(name: str, config: dict, record: dict) -> None:
    """ValueError unless run `name` (its config.json `config`) was validated on the split `record` describes.

    A run's unrecorded fields are not held against it. Compared by what the images are (the split's
    rule, sizes and class counts), not the dataset fingerprint, which changes when files are copied.
    """
    from fer_utils import runs

    trained_on = runs.data_provenance(config)
    for field in SPLIT_FIELDS:
        if trained_on.get(field) is not None and trained_on[field] != record[field]:
            raise ValueError(
                f"'{name}' was trained with {field} {trained_on[field]!r}, but the data given has {record[field]!r}: "
                "its validation images may be another run's training images, or it is another dataset. Pass the "
                "--data (and --val-fraction/--seed) the runs were trained with."
            )


def validation_metrics(model, val) -> dict:
    """val_metrics.json's figures for `model` on the Split `val`: accuracy, macro-F1, per-class recall..."""
    from fer_utils import metrics, models

    probabilities = models.predict(model, val.images)
    scores = metrics.compute_metrics(val.labels, probabilities, val.class_names)
    recall = metrics.per_class_table(val.labels, probabilities, val.class_names)["recall"]
    return {
        "split": "val",
        "num_images": int(len(val)),
        **{key: scores[key] for key in ("accuracy", "macro_f1", "balanced_accuracy", "log_loss")},
        "recall_per_class": {name: float(value) for name, value in recall.items()},
    }


def training_seconds(config: dict) -> float:
    """A run's training wall time from config.json's `wall_time_s`: a number, `{"total": s}` or `{phase: s}`."""
    wall_time = config.get("wall_time_s") or 0.0
    if isinstance(wall_time, dict):
        return float(wall_time["total"]) if "total" in wall_time else float(sum(wall_time.values()))
    return float(wall_time)
