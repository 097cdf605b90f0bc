"""Scoring a model (or an ensemble) on a labelled split: `evaluate_model` and its `EvaluationResult`."""

from __future__ import annotations

import dataclasses
import time
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from fer_utils.files import json_number
from fer_utils.metrics import _as_labels, _as_proba, align_class_names, compute_metrics, confusion, per_class_table
from fer_utils.stats import bootstrap_ci


@dataclasses.dataclass
class EvaluationResult:
    """Everything measured about one model (or ensemble) on one labelled split."""

    name: str
    class_names: tuple[str, ...]
    y_true: np.ndarray  # (N,) int64 labels in `class_names` order
    proba: np.ndarray  # (N, K) probabilities, columns in `class_names` order
    metrics: dict  # compute_metrics(...)
    per_class: pd.DataFrame  # per_class_table(...)
    confusion: np.ndarray  # (K, K) counts, rows true, columns predicted
    confidence_intervals: dict  # {"accuracy": bootstrap_ci(...), "macro_f1": ...}
    images_per_second: float | None = None
    tta: bool = False
    n_params: int | None = None
    training_time_s: float | None = None
    members: tuple[str, ...] = ()  # the models averaged, for an ensemble

    @property
    def y_pred(self) -> np.ndarray:
        """Predicted class index per image."""
        return self.proba.argmax(axis=1)

    def to_dict(self) -> dict:
        """A JSON-ready summary (numbers, lists and strings only)."""
        summary = {
            "name": self.name,
            "class_names": list(self.class_names),
            **{key: json_number(value) for key, value in self.metrics.items()},
            "confidence_intervals": self.confidence_intervals,
            "images_per_second": json_number(self.images_per_second),
            "tta": self.tta,
            "n_params": self.n_params,
            "training_time_s": json_number(self.training_time_s),
            "per_class": {
                class_name: {key: json_number(value) for key, value in row.items()}
                for class_name, row in self.per_class.to_dict(orient="index").items()
            },
            "confusion_matrix": self.confusion.astype(int).tolist(),
            "confusion_matrix_normalized": np.round(confusion(self.y_true, self.y_pred, len(self.class_names),
                                                             normalize="true"), 6).tolist(),
        }
        if self.members:
            summary["members"] = list(self.members)
        return summary


def evaluate_proba(y_true, proba, class_names: Sequence[str], name: str = "model", n_boot: int = 1000,
                   seed: int = 0, **extra) -> EvaluationResult:
    """Score a probability matrix against labels (both in `class_names` order); `n_boot=0`: no intervals."""
    labels = _as_labels(y_true)
    proba = _as_proba(proba, labels.shape[0])
    class_names = tuple(str(name_) for name_ in class_names)
    predictions = proba.argmax(axis=1)
    intervals = {}
    if n_boot and labels.size:
        intervals = {metric: bootstrap_ci(labels, predictions, metric, n_boot=n_boot, seed=seed,
                                          num_classes=len(class_names)) for metric in ("accuracy", "macro_f1")}
    return EvaluationResult(
        name=str(name), class_names=class_names, y_true=labels, proba=proba, confidence_intervals=intervals,
        metrics=compute_metrics(labels, proba, class_names), confusion=confusion(labels, predictions, len(class_names)),
        per_class=per_class_table(labels, predictions, class_names), **extra,
    )


def evaluate_model(source, split, tta: bool = False, batch_size: int = 256, n_boot: int = 1000, seed: int = 0,
                   name: str | None = None) -> EvaluationResult:
    """Evaluate `source` (anything `loading.load_model` takes) on a labelled `data.Split`, matching class names
    by name; `name` overrides the display name. Speed is images per second after one warm-up batch."""
    from fer_utils import models
    from fer_utils.loading import load_model

    run = load_model(source, name=name)
    images, labels = np.asarray(split.images), _as_labels(split.labels, "split.labels")
    data_class_names = tuple(str(class_name) for class_name in split.class_names)
    if len(labels) == 0:
        raise ValueError(f"The split {getattr(split, 'source', '')!s} holds no images; nothing to evaluate.")
    # Check the class names before spending time on predictions.
    align_class_names(np.zeros((0, len(run.class_names))), run.class_names, data_class_names)
    # One warm-up batch builds the predict function, so the timing measures inference.
    models.predict(run.model, images[:batch_size], batch_size=batch_size)
    start = time.perf_counter()
    proba = models.predict(run.model, images, batch_size=batch_size, tta=tta)
    elapsed = time.perf_counter() - start
    return evaluate_proba(
        labels, align_class_names(proba, run.class_names, data_class_names), data_class_names,
        name=run.name, n_boot=n_boot, seed=seed, tta=tta,
        images_per_second=len(images) / elapsed if elapsed > 0 else None,
        n_params=_parameter_count(run.config, run.model),
        training_time_s=_training_time(run.config),
    )


def ensemble_result(results: Sequence[EvaluationResult], name: str = "ensemble", n_boot: int = 1000,
                    seed: int = 0) -> EvaluationResult:
    """Score the mean of several results' probabilities (same split) like one model: parameters and training
    time are the members' sums, speed that of running every member in turn."""
    if not results:
        raise ValueError("An ensemble needs at least one evaluated model.")
    first = results[0]
    for result in results[1:]:
        if result.class_names != first.class_names or not np.array_equal(result.y_true, first.y_true):
            raise ValueError(f"'{result.name}' and '{first.name}' were evaluated on different data (labels or "
                             "class order differ); an ensemble needs every member evaluated on the same split.")

    def total(values):
        return sum(values) if all(value is not None for value in values) else None

    speeds = [result.images_per_second for result in results]
    return evaluate_proba(
        first.y_true, np.mean([result.proba for result in results], axis=0), first.class_names, name=name,
        n_boot=n_boot, seed=seed, tta=all(result.tta for result in results),
        images_per_second=1.0 / sum(1.0 / speed for speed in speeds) if all(speeds) else None,
        n_params=total([result.n_params for result in results]),
        training_time_s=total([result.training_time_s for result in results]),
        members=tuple(result.name for result in results),
    )


def _training_time(config: Mapping) -> float | None:
    """Training wall time from config.json's `wall_time_s`: seconds, or {phase: seconds} (with an optional total)."""
    wall_time = config.get("wall_time_s")
    if isinstance(wall_time, Mapping):
        numbers = [value for value in wall_time.values() if isinstance(value, (int, float))]
        wall_time = wall_time.get("total", sum(numbers) if numbers else None)
    return float(wall_time) if isinstance(wall_time, (int, float)) and not isinstance(wall_time, bool) else None


def _parameter_count(config: Mapping, model) -> int | None:
    """The run's recorded `n_params`, else the model's weight count (None for a stand-in without weights)."""
    if isinstance(config.get("n_params"), (int, float)):
        return int(config["n_params"])
    return int(model.count_params()) if hasattr(model, "count_params") else None
