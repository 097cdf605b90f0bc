"""Scoring a model (or an ensemble) on a labelled split: predictions, TTA, and the result object.

- `predict_proba`: class probabilities of a model on raw images, with optional horizontal-flip
  test-time augmentation (`flip_horizontal`).
- `ensemble_proba`: the (weighted) average of several models' probabilities.
- `evaluate_proba`, `evaluate_model`, `ensemble_result`, `evaluate_ensemble`: an
  `EvaluationResult` with the headline metrics (`fer_utils.metrics`), bootstrap confidence
  intervals (`fer_utils.stats`), per-class table, confusion matrices, speed and model size.

Class names are matched by name: a model whose outputs are the data's classes in another order has
its probability columns reordered; a model trained on other classes is a clear `ValueError`.
Comparing several runs and writing the report is `fer_utils.report`; Grad-CAM is `fer_utils.gradcam`.

Keras is imported inside the functions that need it (through `fer_utils.models` and `fer_utils.runs`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from fer_utils.files import json_number
from fer_utils.metrics import _as_labels, _as_proba, align_class_names, compute_metrics, confusion, per_class_table
from fer_utils.stats import bootstrap_ci


# =============================================================================================
# Predictions from models
# =============================================================================================
def flip_horizontal(images) -> np.ndarray:
    """Mirror a batch of images (N, H, W, C) left to right."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be a batch of shape (N, height, width, channels); got {images.shape}.")
    return images[:, :, ::-1, :]


def predict_proba(model, images, batch_size: int = 256, tta: bool = False) -> np.ndarray:
    """Class probabilities (N, K) of `model` (anything with a Keras-style `predict`) on raw images.

    With `tta=True` (test-time augmentation) the result is the average of the probabilities of the
    images and of their left-right mirror images; faces are roughly symmetric, so both are valid
    views of the same expression.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be a batch of shape (N, height, width, channels); got {images.shape}.")
    from fer_utils import models

    if not tta:
        return np.asarray(models.predict(model, images, batch_size=batch_size), dtype=np.float64)
    # The faces and their mirror images in one pass: one inference loop, not two.
    both = np.asarray(models.predict(model, np.concatenate([images, flip_horizontal(images)]), batch_size=batch_size), dtype=np.float64)
    return (both[: len(images)] + both[len(images):]) / 2.0


def ensemble_proba(probabilities: Sequence, weights: Sequence[float] | None = None) -> np.ndarray:
    """Average several models' probability matrices (all (N, K), same image and class order)."""
    arrays = [np.asarray(proba, dtype=np.float64) for proba in probabilities]
    if not arrays:
        raise ValueError("ensemble_proba needs at least one probability matrix.")
    shapes = {array.shape for array in arrays}
    if len(shapes) != 1:
        raise ValueError(f"All probability matrices must have the same shape to be averaged; got {sorted(shapes)}.")
    if weights is None:
        return np.mean(arrays, axis=0)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(arrays),) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"weights must be {len(arrays)} non-negative numbers with a positive sum; got {weights}.")
    return np.tensordot(weights / weights.sum(), np.stack(arrays), axes=1)


# =============================================================================================
# Evaluation results
# =============================================================================================
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
    confusion_normalized: np.ndarray  # rows divided by their counts
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

    def to_dict(self, include_predictions: bool = False) -> dict:
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
            "confusion_matrix_normalized": np.round(self.confusion_normalized, 6).tolist(),
        }
        if self.members:
            summary["members"] = list(self.members)
        if include_predictions:
            summary["y_true"] = self.y_true.tolist()
            summary["proba"] = np.round(self.proba, 6).tolist()
        return summary


def evaluate_proba(
    y_true,
    proba,
    class_names: Sequence[str],
    name: str = "model",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    **extra,
) -> EvaluationResult:
    """Evaluate a probability matrix against labels (both in `class_names` order).

    `extra` fills the optional fields of EvaluationResult (images_per_second, tta, n_params,
    training_time_s, members). With `n_boot=0` no confidence intervals are computed.
    """
    labels = _as_labels(y_true)
    proba = _as_proba(proba, labels.shape[0])
    class_names = tuple(str(name_) for name_ in class_names)
    metrics = compute_metrics(labels, proba, class_names)
    predictions = proba.argmax(axis=1)
    intervals = {}
    if n_boot and labels.size:
        for metric in ("accuracy", "macro_f1"):
            intervals[metric] = bootstrap_ci(
                labels, predictions, metric, n_boot=n_boot, seed=seed, level=level, num_classes=len(class_names)
            )
    return EvaluationResult(
        name=str(name),
        class_names=class_names,
        y_true=labels,
        proba=proba,
        metrics=metrics,
        per_class=per_class_table(labels, predictions, class_names),
        confusion=confusion(labels, predictions, len(class_names)),
        confusion_normalized=confusion(labels, predictions, len(class_names), normalize="true"),
        confidence_intervals=intervals,
        **extra,
    )


def split_arrays(split) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(images, labels, class_names) of a data.Split or any object with those attributes."""
    try:
        images, labels, class_names = split.images, split.labels, split.class_names
    except AttributeError as error:
        raise ValueError(
            "split must be a fer_utils.data.Split (images, labels, class_names); "
            f"got {type(split).__name__}. Load one with fer_utils.data.load_labelled(path)."
        ) from error
    return np.asarray(images), _as_labels(labels, name="split.labels"), tuple(str(name) for name in class_names)


def training_time_seconds(config: Mapping) -> float | None:
    """Total training wall time from a run's config: `wall_time_s` as a number or a per-phase dict."""
    wall_time = config.get("wall_time_s")
    if isinstance(wall_time, (int, float)) and not isinstance(wall_time, bool):
        return float(wall_time)
    if isinstance(wall_time, Mapping):
        if isinstance(wall_time.get("total"), (int, float)):
            return float(wall_time["total"])
        seconds = [float(value) for value in wall_time.values() if isinstance(value, (int, float))]
        return float(sum(seconds)) if seconds else None
    return None


def _parameter_count(config: Mapping, model) -> int | None:
    """The model's weight count: the run's recorded `n_params`, else trainable + frozen weights of the model."""
    if isinstance(config.get("n_params"), (int, float)):
        return int(config["n_params"])
    if not (hasattr(model, "trainable_weights") and hasattr(model, "non_trainable_weights")):
        return None  # a stand-in with only a `predict` method
    from fer_utils import models

    return sum(models.trainable_summary(model).values())


def evaluate_model(
    model_or_run,
    split,
    tta: bool = False,
    batch_size: int = 256,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    class_names: Sequence[str] | None = None,
    name: str | None = None,
) -> EvaluationResult:
    """Evaluate a Keras model, a `.keras` file or a run folder on a labelled split.

    `split` is a fer_utils.data.Split. The model's class names (from the run folder, or
    `class_names` for a bare model) are matched by name with the split's: the probability columns
    are reordered to the split's order, and different class sets raise a ValueError.
    Inference speed is the number of split images classified per second (after one warm-up batch;
    with TTA each image is classified twice, which roughly halves it).
    """
    images, labels, data_class_names = split_arrays(split)
    from fer_utils.loading import load_model

    loaded = load_model(model_or_run, class_names, name)
    model, model_class_names, display_name, config = loaded.model, loaded.class_names, loaded.name, loaded.config
    if len(labels) == 0:
        raise ValueError(f"The split {getattr(split, 'source', '')!s} holds no images; nothing to evaluate.")
    # Check the class names before spending time on predictions.
    align_class_names(np.zeros((0, len(model_class_names))), model_class_names, data_class_names)

    # One warm-up batch builds and compiles the predict function, so the timing measures inference.
    predict_proba(model, images[: min(batch_size, len(images))], batch_size=batch_size)
    start = time.perf_counter()
    proba = predict_proba(model, images, batch_size=batch_size, tta=tta)
    elapsed = time.perf_counter() - start
    proba = align_class_names(proba, model_class_names, data_class_names)
    return evaluate_proba(
        labels,
        proba,
        data_class_names,
        name=display_name,
        n_boot=n_boot,
        seed=seed,
        level=level,
        images_per_second=len(images) / elapsed if elapsed > 0 else None,
        tta=tta,
        n_params=_parameter_count(config, model),
        training_time_s=training_time_seconds(config),
    )


def ensemble_result(
    results: Sequence[EvaluationResult], name: str = "ensemble", n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> EvaluationResult:
    """Evaluate the average of several results' probabilities, like a single model.

    All results must come from the same split (same labels and class order). The ensemble's
    parameter count and training time are the sums of its members'; its speed is the combined
    throughput of running every member one after the other.
    """
    if len(results) < 1:
        raise ValueError("An ensemble needs at least one evaluated model.")
    first = results[0]
    for result in results[1:]:
        if result.class_names != first.class_names or not np.array_equal(result.y_true, first.y_true):
            raise ValueError(
                f"'{result.name}' and '{first.name}' were evaluated on different data (labels or class order "
                "differ); an ensemble needs every member evaluated on the same split."
            )
    speeds = [result.images_per_second for result in results]
    combined_speed = 1.0 / sum(1.0 / speed for speed in speeds) if all(speed for speed in speeds) else None
    params = [result.n_params for result in results]
    times = [result.training_time_s for result in results]
    return evaluate_proba(
        first.y_true,
        ensemble_proba([result.proba for result in results]),
        first.class_names,
        name=name,
        n_boot=n_boot,
        seed=seed,
        level=level,
        images_per_second=combined_speed,
        tta=all(result.tta for result in results),
        n_params=sum(params) if all(value is not None for value in params) else None,
        training_time_s=sum(times) if all(value is not None for value in times) else None,
        members=tuple(result.name for result in results),
    )


def evaluate_ensemble(
    models_or_runs: Sequence, split, name: str = "ensemble", tta: bool = False, batch_size: int = 256,
    n_boot: int = 1000, seed: int = 0,
) -> EvaluationResult:
    """Evaluate the probability average of several models / run folders on a split."""
    members = [
        evaluate_model(model, split, tta=tta, batch_size=batch_size, n_boot=0, seed=seed) for model in models_or_runs
    ]
    return ensemble_result(members, name=name, n_boot=n_boot, seed=seed)
