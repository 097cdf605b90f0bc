"""Judging and comparing trained models: metrics, confidence intervals, McNemar, ensembles, TTA.

The module has two layers:

- Pure functions on arrays (`y_true` integer labels, `proba` an (N, K) matrix of class
  probabilities): `compute_metrics`, `per_class_table`, `confusion`, `expected_calibration_error`,
  `reliability_bins`, `bootstrap_ci`, `mcnemar_exact`, `ensemble_proba`. They never touch a model,
  so they are fast to test and reuse.
- Model-level functions: `predict_proba` (with optional horizontal-flip test-time augmentation),
  `evaluate_model` (a model, a `.keras` file or a run folder on a labelled split),
  `evaluate_ensemble`, `gradcam_heatmaps` and `compare_runs`, which evaluates several run folders
  (and their ensemble) on the same split and writes `summary.md`, `summary.json` and figures.

Class names are matched by name: a model whose outputs are the data's classes in another order has
its probability columns reordered; a model trained on other classes is a clear `ValueError`.

Keras is imported inside the functions that need it; TensorFlow only through `fer_utils.backend`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from fer_utils.files import json_number as _json_number

# Probabilities are clipped to [LOG_LOSS_EPSILON, 1] before the log, the same epsilon Keras uses in
# its cross-entropy, so a test-set log loss is comparable with the `val_loss` of the training history.
LOG_LOSS_EPSILON = 1e-7

# Metrics that `bootstrap_ci` computes for all resamples at once.
VECTORISED_METRICS = ("accuracy", "macro_f1", "balanced_accuracy")

# Parameter names of `EvaluationResult.metrics`, in the order the CLI prints them.
HEADLINE_METRICS = (
    ("accuracy", "Accuracy"),
    ("balanced_accuracy", "Balanced accuracy"),
    ("macro_f1", "Macro-F1"),
    ("top2_accuracy", "Top-2 accuracy"),
    ("log_loss", "Log loss"),
    ("ece", "Expected calibration error"),
)


# =============================================================================================
# Array checks
# =============================================================================================
def _as_labels(y_true, name: str = "y_true") -> np.ndarray:
    """Return `y_true` as a 1-D int64 array, or raise a ValueError saying what is wrong."""
    labels = np.asarray(y_true)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of integer class indices; got shape {labels.shape}.")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise ValueError(f"{name} must hold integer class indices; got dtype {labels.dtype}.")
    return labels.astype(np.int64)


def _as_proba(proba, num_samples: int | None = None) -> np.ndarray:
    """Return `proba` as an (N, K) float64 array, checking its shape against the labels."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2:
        raise ValueError(f"proba must be an (N, num_classes) array of probabilities; got shape {proba.shape}.")
    if num_samples is not None and proba.shape[0] != num_samples:
        raise ValueError(f"proba has {proba.shape[0]} rows but there are {num_samples} labels; they must match.")
    return proba


def _as_predictions(pred_or_proba, num_samples: int | None = None) -> np.ndarray:
    """Accept predicted class indices (N,) or probabilities (N, K) and return class indices (N,)."""
    array = np.asarray(pred_or_proba)
    if array.ndim == 2:
        array = array.argmax(axis=1)
    predictions = _as_labels(array, name="predictions")
    if num_samples is not None and predictions.shape[0] != num_samples:
        raise ValueError(
            f"There are {predictions.shape[0]} predictions but {num_samples} labels; they must match."
        )
    return predictions


def _num_classes(class_names=None, *arrays) -> int:
    """The number of classes: from `class_names` if given, else one more than the largest label."""
    if class_names is not None:
        return len(class_names)
    largest = max((int(np.max(array)) for array in arrays if np.size(array)), default=-1)
    return largest + 1


def _check_label_range(labels: np.ndarray, num_classes: int, name: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{name} holds class indices outside 0..{num_classes - 1} "
            f"(found {labels.min()}..{labels.max()}); check the class names and the labels."
        )


# =============================================================================================
# Pure metrics on arrays
# =============================================================================================
def confusion(y_true, y_pred, num_classes: int | None = None, normalize: str | None = None) -> np.ndarray:
    """Return the confusion matrix: rows are true classes, columns are predicted classes.

    `y_pred` may be class indices (N,) or probabilities (N, K). With `normalize="true"` every row is
    divided by its count, so the diagonal holds per-class recall; a class absent from `y_true` gets
    a row of zeros rather than NaN.
    """
    labels = _as_labels(y_true)
    predictions = _as_predictions(y_pred, labels.shape[0])
    if num_classes is None:
        num_classes = np.asarray(y_pred).shape[1] if np.ndim(y_pred) == 2 else _num_classes(None, labels, predictions)
    _check_label_range(labels, num_classes, "y_true")
    _check_label_range(predictions, num_classes, "y_pred")
    counts = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    matrix = counts.reshape(num_classes, num_classes)
    if normalize is None:
        return matrix
    if normalize != "true":
        raise ValueError(f"normalize must be None or 'true' (divide each row by its count); got {normalize!r}.")
    row_totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, row_totals, out=np.zeros(matrix.shape, dtype=np.float64), where=row_totals > 0)


def _scores_from_confusion(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support from a (..., K, K) confusion matrix.

    Works on a stack of matrices (the bootstrap passes one per resample). Precision, recall and F1
    are NaN for a class where they are undefined (no predictions, no support, or neither).
    """
    true_positives = np.diagonal(matrix, axis1=-2, axis2=-1).astype(np.float64)
    support = matrix.sum(axis=-1).astype(np.float64)
    predicted = matrix.sum(axis=-2).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positives / predicted, np.nan)
        recall = np.where(support > 0, true_positives / support, np.nan)
        # 2 TP / (2 TP + FP + FN) = 2 TP / (support + predicted): equal to the harmonic mean of
        # precision and recall, and 0 (not NaN) when one of them is 0.
        f1 = np.where(support + predicted > 0, 2 * true_positives / (support + predicted), np.nan)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def _macro_f1_from_confusion(matrix: np.ndarray) -> np.ndarray:
    # The mean over classes that occur in the labels or the predictions (scikit-learn's default).
    return np.nanmean(_scores_from_confusion(matrix)["f1"], axis=-1)


def _balanced_accuracy_from_confusion(matrix: np.ndarray) -> np.ndarray:
    # The mean recall over classes that occur in the labels (scikit-learn's definition).
    return np.nanmean(_scores_from_confusion(matrix)["recall"], axis=-1)


def top_k_accuracy(y_true, proba, k: int = 2) -> float:
    """The fraction of samples whose true class is among the `k` most probable classes."""
    labels = _as_labels(y_true)
    proba = _as_proba(proba, labels.shape[0])
    if not 1 <= k <= proba.shape[1]:
        raise ValueError(f"k must be between 1 and the number of classes ({proba.shape[1]}); got {k}.")
    if labels.size == 0:
        return float("nan")
    # Stable sort of the negated probabilities: on ties the lower class index ranks first.
    top_k = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top_k == labels[:, None], axis=1)))


def log_loss(y_true, proba) -> float:
    """The mean negative log probability of the true class (probabilities clipped at 1e-7)."""
    labels = _as_labels(y_true)
    proba = _as_proba(proba, labels.shape[0])
    _check_label_range(labels, proba.shape[1], "y_true")
    true_class_proba = np.clip(proba[np.arange(labels.shape[0]), labels], LOG_LOSS_EPSILON, 1.0)
    return float(-np.mean(np.log(true_class_proba)))


def reliability_bins(y_true, proba, n_bins: int = 15) -> pd.DataFrame:
    """Group samples by confidence (the top probability) into `n_bins` equal-width bins.

    Bin b covers (b/n_bins, (b+1)/n_bins]; a confidence of exactly 0 falls into the first bin.
    Returns one row per bin: lower, upper, count, confidence (mean top probability), accuracy
    (fraction correct); the last two are NaN for an empty bin.
    """
    labels = _as_labels(y_true)
    proba = _as_proba(proba, labels.shape[0])
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1; got {n_bins}.")
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == labels).astype(np.float64)
    bin_index = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    counts = np.bincount(bin_index, minlength=n_bins)
    confidence_sum = np.bincount(bin_index, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(bin_index, weights=correct, minlength=n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_confidence = np.where(counts > 0, confidence_sum / counts, np.nan)
        accuracy = np.where(counts > 0, correct_sum / counts, np.nan)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame(
        {
            "lower": edges[:-1],
            "upper": edges[1:],
            "count": counts,
            "confidence": mean_confidence,
            "accuracy": accuracy,
        }
    )


def expected_calibration_error(y_true, proba, n_bins: int = 15) -> float:
    """Expected calibration error: sum over confidence bins of (bin share) x |accuracy - confidence|."""
    bins = reliability_bins(y_true, proba, n_bins=n_bins)
    total = bins["count"].sum()
    if total == 0:
        return float("nan")
    filled = bins[bins["count"] > 0]
    gaps = (filled["accuracy"] - filled["confidence"]).abs()
    return float((filled["count"] / total * gaps).sum())


def compute_metrics(y_true, proba, class_names: Sequence[str] | None = None, n_bins: int = 15) -> dict:
    """Headline metrics of class probabilities against integer labels.

    Returns a dict with `n`, `accuracy`, `balanced_accuracy` (mean recall over classes present in
    the labels), `macro_f1` (mean F1 over classes present in the labels or predictions),
    `top2_accuracy`, `log_loss` and `ece` (expected calibration error with `n_bins` bins).
    """
    labels = _as_labels(y_true)
    proba = _as_proba(proba, labels.shape[0])
    num_classes = proba.shape[1]
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(
            f"proba has {num_classes} columns but {len(class_names)} class names were given: {list(class_names)}."
        )
    _check_label_range(labels, num_classes, "y_true")
    matrix = confusion(labels, proba.argmax(axis=1), num_classes)
    n = int(labels.shape[0])
    return {
        "n": n,
        "accuracy": float(np.trace(matrix) / n) if n else float("nan"),
        "balanced_accuracy": float(_balanced_accuracy_from_confusion(matrix)) if n else float("nan"),
        "macro_f1": float(_macro_f1_from_confusion(matrix)) if n else float("nan"),
        "top2_accuracy": top_k_accuracy(labels, proba, k=min(2, num_classes)),
        "log_loss": log_loss(labels, proba) if n else float("nan"),
        "ece": expected_calibration_error(labels, proba, n_bins=n_bins),
    }


def per_class_table(y_true, y_pred, class_names: Sequence[str]) -> pd.DataFrame:
    """Per-class precision, recall, F1 and support as a DataFrame indexed by class name.

    `y_pred` may be class indices or probabilities. An undefined score (a class never predicted,
    or absent from the labels) is reported as 0, as scikit-learn does with `zero_division=0`.
    """
    labels = _as_labels(y_true)
    predictions = _as_predictions(y_pred, labels.shape[0])
    scores = _scores_from_confusion(confusion(labels, predictions, len(class_names)))
    table = pd.DataFrame(
        {
            "precision": np.nan_to_num(scores["precision"]),
            "recall": np.nan_to_num(scores["recall"]),
            "f1": np.nan_to_num(scores["f1"]),
            "support": scores["support"].astype(np.int64),
        },
        index=pd.Index(list(class_names), name="class"),
    )
    return table


# =============================================================================================
# Bootstrap confidence intervals and McNemar's test
# =============================================================================================
def _metric_from_confusion(metric: str, matrices: np.ndarray) -> np.ndarray:
    if metric == "accuracy":
        totals = matrices.sum(axis=(-2, -1))
        return np.trace(matrices, axis1=-2, axis2=-1) / np.maximum(totals, 1)
    if metric == "macro_f1":
        return _macro_f1_from_confusion(matrices)
    if metric == "balanced_accuracy":
        return _balanced_accuracy_from_confusion(matrices)
    raise ValueError(f"Unknown metric {metric!r}; use one of {VECTORISED_METRICS} or pass a function.")


def bootstrap_ci(
    y_true,
    y_pred,
    metric: str | Callable[[np.ndarray, np.ndarray], float] = "accuracy",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    num_classes: int | None = None,
    chunk_size: int = 250,
) -> dict:
    """Percentile bootstrap confidence interval of a metric over test images.

    Test images are resampled with replacement `n_boot` times (seeded, so the interval is
    reproducible), the metric is recomputed on each resample and the interval is the central
    `level` share of those values. `y_pred` may be class indices or probabilities. `metric` is
    "accuracy", "macro_f1", "balanced_accuracy" (computed for many resamples at once from stacked
    confusion matrices) or a function `metric(y_true, y_pred) -> float` (called per resample).

    Returns {"estimate", "low", "high", "level", "n_boot"}; `estimate` is the metric on all images.
    """
    labels = _as_labels(y_true)
    predictions = _as_predictions(y_pred, labels.shape[0])
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (for example 0.95); got {level}.")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1; got {n_boot}.")
    n = labels.shape[0]
    if n == 0:
        raise ValueError("bootstrap_ci needs at least one labelled sample; the split is empty.")
    rng = np.random.default_rng(seed)

    if callable(metric):
        estimate = float(metric(labels, predictions))
        values = np.empty(n_boot)
        for index in range(n_boot):
            sample = rng.integers(0, n, size=n)
            values[index] = metric(labels[sample], predictions[sample])
    else:
        if num_classes is None:
            num_classes = np.asarray(y_pred).shape[1] if np.ndim(y_pred) == 2 else _num_classes(None, labels, predictions)
        _check_label_range(labels, num_classes, "y_true")
        _check_label_range(predictions, num_classes, "y_pred")
        cells = num_classes * num_classes
        codes = labels * num_classes + predictions
        estimate = float(_metric_from_confusion(metric, confusion(labels, predictions, num_classes)))
        values = np.empty(n_boot)
        # Resamples are processed in chunks; each resample's confusion matrix comes from one
        # bincount over (resample offset + cell code), which keeps 1000 x 7k samples fast and small.
        for start in range(0, n_boot, chunk_size):
            size = min(chunk_size, n_boot - start)
            samples = rng.integers(0, n, size=(size, n))
            offsets = np.arange(size)[:, None] * cells
            counts = np.bincount((codes[samples] + offsets).ravel(), minlength=size * cells)
            values[start : start + size] = _metric_from_confusion(
                metric, counts.reshape(size, num_classes, num_classes)
            )
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.nanpercentile(values, [tail, 100.0 - tail])
    return {"estimate": estimate, "low": float(low), "high": float(high), "level": level, "n_boot": int(n_boot)}


def mcnemar_exact(y_true, pred_a, pred_b) -> dict:
    """McNemar's exact test: do models A and B have the same error rate on these images?

    Only discordant images count: `b` = A right and B wrong, `c` = A wrong and B right. Under the
    null hypothesis b ~ Binomial(b + c, 1/2); the p-value is the exact two-sided binomial test.
    With no discordant images the models are indistinguishable and the p-value is 1.
    """
    from scipy.stats import binomtest

    labels = _as_labels(y_true)
    correct_a = _as_predictions(pred_a, labels.shape[0]) == labels
    correct_b = _as_predictions(pred_b, labels.shape[0]) == labels
    b = int(np.sum(correct_a & ~correct_b))
    c = int(np.sum(~correct_a & correct_b))
    p_value = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)
    return {"b": b, "c": c, "n_discordant": b + c, "p_value": min(p_value, 1.0)}


# =============================================================================================
# Class names
# =============================================================================================
def align_class_names(proba, model_class_names: Sequence[str], data_class_names: Sequence[str]) -> np.ndarray:
    """Reorder probability columns from the model's class order to the data's class order.

    The same classes in another order are reordered by name; different classes are a ValueError
    that names both lists, because the model's outputs cannot be matched to the labels.
    """
    proba = np.asarray(proba)
    model_class_names = [str(name) for name in model_class_names]
    data_class_names = [str(name) for name in data_class_names]
    if proba.ndim != 2 or proba.shape[1] != len(model_class_names):
        raise ValueError(
            f"The model returns {proba.shape[-1] if proba.ndim else 0} probabilities per image but names "
            f"{len(model_class_names)} classes ({model_class_names}); its class_names.json does not match it."
        )
    if len(set(model_class_names)) != len(model_class_names):
        raise ValueError(f"The model's class names contain duplicates: {model_class_names}.")
    if sorted(model_class_names) != sorted(data_class_names):
        raise ValueError(
            "The model's classes do not match the data's classes, so its outputs cannot be compared "
            f"with the labels. Model: {model_class_names}; data: {data_class_names}. Evaluate the model "
            "on data with the classes it was trained on."
        )
    order = [model_class_names.index(name) for name in data_class_names]
    return proba[:, order]


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
            **{key: _json_number(value) for key, value in self.metrics.items()},
            "confidence_intervals": self.confidence_intervals,
            "images_per_second": _json_number(self.images_per_second),
            "tta": self.tta,
            "n_params": self.n_params,
            "training_time_s": _json_number(self.training_time_s),
            "per_class": {
                class_name: {key: _json_number(value) for key, value in row.items()}
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


def _split_arrays(split) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
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
    if isinstance(config.get("n_params"), (int, float)):
        return int(config["n_params"])
    count_params = getattr(model, "count_params", None)
    return int(count_params()) if callable(count_params) else None


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
    images, labels, data_class_names = _split_arrays(split)
    from fer_utils.runs import load_model

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


def holm_adjust(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (controls the family-wise error rate over all pairs)."""
    p_values = np.asarray(p_values, dtype=np.float64)
    count = p_values.size
    order = np.argsort(p_values, kind="stable")
    scaled = np.minimum(1.0, (count - np.arange(count)) * p_values[order])
    adjusted = np.empty(count)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def mcnemar_table(results: Sequence[EvaluationResult]) -> pd.DataFrame:
    """McNemar's exact test for every pair of results.

    Columns: model_a, model_b, b (only A right), c (only B right), n_discordant, p_value and
    p_value_holm (adjusted for testing all pairs at once).
    """
    rows = []
    for index, result_a in enumerate(results):
        for result_b in results[index + 1 :]:
            if not np.array_equal(result_a.y_true, result_b.y_true):
                raise ValueError(f"'{result_a.name}' and '{result_b.name}' were not evaluated on the same images.")
            test = mcnemar_exact(result_a.y_true, result_a.y_pred, result_b.y_pred)
            rows.append({"model_a": result_a.name, "model_b": result_b.name, **test})
    table = pd.DataFrame(rows, columns=["model_a", "model_b", "b", "c", "n_discordant", "p_value"])
    table["p_value_holm"] = holm_adjust(table["p_value"].to_numpy())
    return table


def summary_table(results: Sequence[EvaluationResult]) -> pd.DataFrame:
    """One tidy row per model: size, cost, speed, headline metrics with CIs, per-class F1."""
    rows = []
    for result in results:
        row = {
            "model": result.name,
            "parameters": result.n_params,
            "training_time_s": result.training_time_s,
            "images_per_s": result.images_per_second,
            "accuracy": result.metrics["accuracy"],
            "accuracy_ci_low": result.confidence_intervals.get("accuracy", {}).get("low"),
            "accuracy_ci_high": result.confidence_intervals.get("accuracy", {}).get("high"),
            "macro_f1": result.metrics["macro_f1"],
            "macro_f1_ci_low": result.confidence_intervals.get("macro_f1", {}).get("low"),
            "macro_f1_ci_high": result.confidence_intervals.get("macro_f1", {}).get("high"),
            "balanced_accuracy": result.metrics["balanced_accuracy"],
            "top2_accuracy": result.metrics["top2_accuracy"],
            "log_loss": result.metrics["log_loss"],
            "ece": result.metrics["ece"],
        }
        for class_name, f1 in result.per_class["f1"].items():
            row[f"f1_{class_name}"] = float(f1)
        rows.append(row)
    return pd.DataFrame(rows)


# =============================================================================================
# Grad-CAM
# =============================================================================================
def default_gradcam_layer(model) -> str:
    """The default Grad-CAM layer: the last layer of the nested "backbone" with a 4-D output.

    Pooling layers are passed over (VGG16 and small_cnn's stages end with one): pooling halves
    the resolution and adds no new evidence, and at 48 px VGG16's last pooled map is a single
    pixel. So are maps of a single pixel (small_cnn's last convolution), which cannot say where
    anything is. So this is the last convolution block's output (e.g. VGG16 "block5_conv3",
    ResNet50 "conv5_block3_out", EfficientNetB0 "top_activation", small_cnn "stage4_conv2_relu").
    """
    import keras

    pooling = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
    backbone = _backbone_of(model)
    candidates = [layer for layer in backbone.layers if _is_feature_map_layer(layer)]
    if not candidates:
        raise ValueError(f"The backbone '{backbone.name}' has no layer with a 4-D output to compute Grad-CAM on.")
    preferred = [
        layer for layer in candidates
        if not isinstance(layer, pooling) and tuple(layer.output.shape[1:3]) != (1, 1)
    ]
    return (preferred or candidates)[-1].name


def _is_feature_map_layer(layer) -> bool:
    import keras

    if isinstance(layer, keras.layers.InputLayer):
        return False
    try:
        return len(layer.output.shape) == 4
    except (AttributeError, ValueError):
        return False


def _backbone_of(model):
    import keras

    try:
        backbone = model.get_layer("backbone")
    except ValueError as error:
        raise ValueError(
            f"Model '{model.name}' has no layer named 'backbone'; Grad-CAM needs the project's model structure "
            "(fer_utils.models.build_model: ... -> 'backbone' (nested model) -> 'gap' -> ... -> 'predictions')."
        ) from error
    if not isinstance(backbone, keras.Model):
        raise ValueError(f"Layer 'backbone' of model '{model.name}' is not a nested Keras model.")
    return backbone


def gradcam_heatmaps(model, images, layer_name: str | None = None, class_index=None, batch_size: int = 32) -> np.ndarray:
    """Grad-CAM heatmaps (N, H, W) in [0, 1], one per image, at the images' own size.

    For the chosen feature-map layer of the nested backbone (default: `default_gradcam_layer`), the
    gradient of the class score (the pre-softmax logit of `class_index`, default the predicted
    class; an int or one index per image) with respect to the feature map is averaged over space
    to weight each channel; the weighted sum of channels, passed through ReLU, is upsampled to
    the image size and divided by its maximum. A heatmap with no positive evidence is all zeros.
    """
    import keras

    from fer_utils import backend

    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be a batch of shape (N, height, width, channels); got {images.shape}.")
    backbone = _backbone_of(model)
    layer_name = layer_name or default_gradcam_layer(model)
    try:
        target = backbone.get_layer(layer_name)
    except ValueError as error:
        choices = [layer.name for layer in backbone.layers if _is_feature_map_layer(layer)]
        raise ValueError(
            f"The backbone '{backbone.name}' has no layer '{layer_name}'. Layers with 4-D outputs: {choices}."
        ) from error
    if not _is_feature_map_layer(target):
        raise ValueError(f"Layer '{layer_name}' does not output a 4-D feature map; Grad-CAM needs one.")

    backbone_input_model, after = _models_around_backbone(model)
    feature_model = keras.Model(backbone.inputs, [target.output, backbone.output])

    def class_scores(features):
        # The head after the backbone; dropout is skipped (identity at inference) and the final
        # softmax layer's logits are used, as in the Grad-CAM paper (softmax saturates gradients).
        for layer in after:
            if isinstance(layer, keras.layers.Dropout):
                continue
            if layer is after[-1] and _is_softmax_dense(layer):
                features = keras.ops.matmul(keras.ops.cast(features, layer.kernel.dtype), layer.kernel)
                if layer.bias is not None:
                    features = features + layer.bias
            else:
                features = layer(features, training=False)
        return features

    num_images = images.shape[0]
    class_indices = None
    if class_index is not None:
        class_indices = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (num_images,))
        num_classes = int(model.output_shape[-1])
        if class_indices.min() < 0 or class_indices.max() >= num_classes:
            raise ValueError(f"class_index must lie in 0..{num_classes - 1}; got {class_index}.")
    heatmaps = np.zeros(images.shape[:3], dtype=np.float32)
    for start in range(0, num_images, batch_size):
        batch = backbone_input_model(keras.ops.convert_to_tensor(images[start : start + batch_size]), training=False)
        batch_classes = None if class_indices is None else class_indices[start : start + batch_size]
        feature_maps, gradients, _ = backend.class_score_gradients(feature_model, class_scores, batch, batch_classes)
        # One weight per channel: the spatial mean of the gradient (the paper's global-average pooling).
        channel_weights = gradients.mean(axis=(1, 2), keepdims=True)
        cams = np.maximum((feature_maps * channel_weights).sum(axis=-1), 0.0)
        resized = keras.ops.image.resize(cams[..., None], images.shape[1:3], interpolation="bilinear")
        resized = np.maximum(keras.ops.convert_to_numpy(resized)[..., 0], 0.0)
        peaks = resized.max(axis=(1, 2), keepdims=True)
        heatmaps[start : start + batch_size] = np.divide(resized, peaks, out=np.zeros_like(resized), where=peaks > 0)
    return np.clip(heatmaps, 0.0, 1.0)


def _is_softmax_dense(layer) -> bool:
    import keras

    activation = getattr(layer, "activation", None)
    return isinstance(layer, keras.layers.Dense) and getattr(activation, "__name__", "") == "softmax"


def _models_around_backbone(model) -> tuple[Any, list]:
    """(a model from the raw pixels to the backbone's input, the head layers after the backbone).

    The input part is cut from the model's own graph at the output of the layer just before
    "backbone" (the contract's "preprocess"), so any built-in layers before it, including ones
    with several inputs such as a Concatenate, are reproduced exactly.
    """
    import keras

    names = [layer.name for layer in model.layers]
    position = names.index("backbone")
    before = model.layers[position - 1] if position > 0 else None
    if before is None or isinstance(before, (keras.layers.InputLayer, keras.Model)):
        raise ValueError(
            f"Model '{model.name}' needs a plain layer (the contract's 'preprocess') right before 'backbone' "
            "for Grad-CAM to find the backbone's input."
        )
    after = list(model.layers[position + 1 :])
    if not after:
        raise ValueError(f"Model '{model.name}' has no layers after 'backbone'; expected the classification head.")
    return keras.Model(model.inputs, before.output), after


# =============================================================================================
# Comparing runs
# =============================================================================================
def _unique_names(names: Iterable[str]) -> list[str]:
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return unique


def expand_run_dirs(paths: Sequence) -> list[Path]:
    """Run folders from paths that are run folders, .keras files, or folders holding run folders."""
    from fer_utils.runs import find_runs, is_run_dir

    expanded: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir() and not is_run_dir(path) and find_runs(path):
            expanded.extend(find_runs(path))
        else:
            expanded.append(path)
    return expanded


def _format_interval(value, interval: Mapping | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if not interval:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{interval['low']:.{digits}f}, {interval['high']:.{digits}f}]"


def _format_optional(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def markdown_table(frame: pd.DataFrame) -> str:
    """Render a DataFrame of already formatted cells as a GitHub-flavoured markdown table."""
    header = "| " + " | ".join(str(column) for column in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(str(cell) for cell in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def formatted_summary(results: Sequence[EvaluationResult]) -> pd.DataFrame:
    """The summary table with human-readable cells (CIs in brackets), for printing and markdown."""
    rows = []
    for result in results:
        intervals = result.confidence_intervals
        row = {
            "model": result.name,
            "parameters": _format_optional(result.n_params, ","),
            "training time (s)": _format_optional(result.training_time_s, ".0f"),
            "images/s": _format_optional(result.images_per_second, ".0f"),
            "accuracy [95% CI]": _format_interval(result.metrics["accuracy"], intervals.get("accuracy")),
            "macro-F1 [95% CI]": _format_interval(result.metrics["macro_f1"], intervals.get("macro_f1")),
            "balanced accuracy": f"{result.metrics['balanced_accuracy']:.3f}",
            "top-2 accuracy": f"{result.metrics['top2_accuracy']:.3f}",
            "log loss": f"{result.metrics['log_loss']:.3f}",
            "ECE": f"{result.metrics['ece']:.3f}",
        }
        for class_name, f1 in result.per_class["f1"].items():
            row[f"F1 {class_name}"] = f"{f1:.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


# FER2013's own test protocol: Kaggle's test/ folder is PublicTest + PrivateTest; papers report PrivateTest.
PROTOCOL_ROWS = {"private_test": "PrivateTest", "public_test": "PublicTest", "test": "whole test folder"}


def protocol_table(results: Sequence[EvaluationResult], usages=None, n_boot: int = 1000, seed: int = 0,
                   level: float = 0.95) -> pd.DataFrame:
    """Each result scored on PrivateTest, PublicTest and the whole test folder, each with its own CIs.

    `usages` says which test set each image belongs to, aligned with the results' images
    (`fer_utils.data.test_usages`); None gives the whole-folder row only. The predictions are
    reused, nothing is re-run. PrivateTest is the row comparable to published FER2013 numbers.
    """
    if usages is not None:
        usages = np.asarray(usages)
    rows = []
    for result in results:
        if usages is not None and len(usages) != len(result.y_true):
            raise ValueError(
                f"usages has {len(usages)} entries but '{result.name}' was evaluated on {len(result.y_true)} images; "
                "pass data.test_usages() of the split the results come from."
            )
        parts = [("test", np.ones(len(result.y_true), dtype=bool))]
        if usages is not None:
            parts = [(split, usages == split) for split in ("private_test", "public_test")] + parts
        for split, mask in parts:
            scored = evaluate_proba(result.y_true[mask], result.proba[mask], result.class_names, name=result.name,
                                    n_boot=n_boot, seed=seed, level=level)
            intervals = scored.confidence_intervals
            rows.append({
                "model": result.name,
                "test set": PROTOCOL_ROWS[split],
                "images": int(mask.sum()),
                f"accuracy [{level:.0%} CI]": _format_interval(scored.metrics["accuracy"], intervals.get("accuracy")),
                f"macro-F1 [{level:.0%} CI]": _format_interval(scored.metrics["macro_f1"], intervals.get("macro_f1")),
                "comparable to papers": "yes" if split == "private_test" else "no",
            })
    return pd.DataFrame(rows)


def protocol_headline(protocol: pd.DataFrame, results: Sequence[EvaluationResult]) -> str:
    """One Markdown sentence: the most accurate model's PrivateTest score (whole folder when unknown)."""
    level = next(column for column in protocol.columns if column.startswith("accuracy ["))
    best = max(results, key=lambda result: result.metrics["accuracy"]).name
    rows = protocol[protocol["model"] == best].set_index("test set")
    if "PrivateTest" in rows.index:
        row = rows.loc["PrivateTest"]
        return (f"**Headline: {best} scores {row[level]} accuracy ({level[9:-1]}) on the PrivateTest set** "
                f"({row['images']:,} images here, 3,589 in FER2013): the number comparable to published results.")
    row = rows.loc["whole test folder"]
    return (f"**{best} scores {row[level]} accuracy ({level[9:-1]}) on the whole test folder** ({row['images']:,} images); "
            "its file names do not say PublicTest/PrivateTest, so this is not the split papers report.")


def compare_runs(
    run_dirs: Sequence,
    split,
    out_dir,
    tta: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    include_ensemble: bool = True,
    batch_size: int = 256,
    gradcam_images: int = 7,
    level: float = 0.95,
    write_figures: bool = True,
) -> tuple[pd.DataFrame, dict[str, EvaluationResult]]:
    """Evaluate several run folders (and the average of their probabilities) on the same split.

    Writes into `out_dir`: `summary.md`, `summary.json` (table, McNemar p-values, per-model
    metrics, settings) and, unless `write_figures=False`, PNG figures: training curves per run,
    validation curves, confusion matrices, per-class F1, reliability diagram, misclassified faces
    per model, and Grad-CAM per run on `gradcam_images` test faces (0: none).
    Returns (summary DataFrame, {name: EvaluationResult}). Models are loaded and evaluated one at
    a time and not kept in memory; a missing run or a class mismatch fails before any evaluation.
    """
    from fer_utils.files import atomic_write_json, atomic_write_text
    from fer_utils.runs import load_run

    images, labels, data_class_names = _split_arrays(split)
    paths = check_runs(run_dirs, data_class_names)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[EvaluationResult] = []
    histories: dict[str, pd.DataFrame] = {}
    figures: dict[str, str] = {}
    notes: list[str] = []
    gradcam_sample = _gradcam_sample(labels, gradcam_images) if write_figures else np.zeros(0, np.int64)
    for path in paths:
        run = load_run(path)
        name = _unique_names([*(result.name for result in results), run.name])[-1]
        result = evaluate_model(run, split, tta=tta, batch_size=batch_size, n_boot=n_boot, seed=seed, level=level, name=name)
        results.append(result)
        if run.history is not None and len(run.history):
            histories[name] = run.history
        if len(gradcam_sample):
            try:
                figures.update(_gradcam_figure(run.model, result, images, gradcam_sample, out_dir))
            except ValueError as error:
                notes.append(f"Grad-CAM skipped for {name}: {error}")
        del run

    if include_ensemble and len(results) >= 2:
        ensemble_name = _unique_names([*(result.name for result in results), "ensemble"])[-1]
        results.append(ensemble_result(results, name=ensemble_name, n_boot=n_boot, seed=seed, level=level))
    summary = summary_table(results)
    mcnemar = mcnemar_table(results)
    if write_figures:
        figures.update(_comparison_figures(results, histories, images, out_dir))

    settings = {
        "data": str(getattr(split, "source", "")),
        "n": int(len(labels)),
        "class_names": list(data_class_names),
        "tta": tta,
        "n_boot": n_boot,
        "seed": seed,
        "confidence_level": level,
        "runs": [str(path) for path in paths],
    }
    payload = {
        "settings": settings,
        "summary": [{key: _json_number(value) for key, value in row.items()} for row in summary.to_dict(orient="records")],
        "mcnemar": [{key: _json_number(value) for key, value in row.items()} for row in mcnemar.to_dict(orient="records")],
        "models": {result.name: result.to_dict() for result in results},
        "figures": figures,
        "notes": notes,
    }
    atomic_write_json(out_dir / "summary.json", payload)
    atomic_write_text(out_dir / "summary.md", _summary_markdown(results, mcnemar, settings, figures, notes))
    return summary, {result.name: result for result in results}


def _gradcam_figure(model, result: EvaluationResult, images: np.ndarray, sample: np.ndarray, out_dir: Path) -> dict:
    """Write the Grad-CAM figure of one model on the sample faces; return {figure key: file name}."""
    from fer_utils import plots

    heatmaps = gradcam_heatmaps(model, images[sample])
    names = result.class_names
    titles = [f"true: {names[result.y_true[index]]}\npred: {names[result.y_pred[index]]}" for index in sample]
    figure = plots.plot_gradcam(images[sample], heatmaps, titles, title=f"Grad-CAM: {result.name}")
    return {f"gradcam_{result.name}": _save(figure, out_dir / f"gradcam_{_slug(result.name)}.png")}


def _comparison_figures(results: Sequence[EvaluationResult], histories: dict, images: np.ndarray, out_dir: Path) -> dict:
    """Write the comparison figures; return {figure key: file name}."""
    from fer_utils import plots

    class_names = results[0].class_names
    figures = {}
    for name, history in histories.items():
        figure = plots.plot_training_curves(history, title=f"Training curves: {name}")
        figures[f"training_curves_{name}"] = _save(figure, out_dir / f"training_curves_{_slug(name)}.png")
    if histories:
        figures["validation_curves"] = _save(plots.plot_validation_curves(histories), out_dir / "validation_curves.png")
    figures["confusion_matrices"] = _save(
        plots.plot_confusion_matrices({r.name: r.confusion for r in results}, class_names, normalize=True),
        out_dir / "confusion_matrices.png",
    )
    figures["per_class_f1"] = _save(
        plots.plot_per_class_f1({r.name: r.per_class for r in results}), out_dir / "per_class_f1.png"
    )
    figures["reliability_diagram"] = _save(
        plots.plot_reliability_diagram({r.name: (r.y_true, r.proba) for r in results}),
        out_dir / "reliability_diagram.png",
    )
    for result in results:
        figure = plots.plot_misclassified(
            images, result.y_true, result.proba, class_names, n=16, title=f"Misclassified faces: {result.name}"
        )
        figures[f"misclassified_{result.name}"] = _save(figure, out_dir / f"misclassified_{_slug(result.name)}.png")
    return figures


def check_runs(run_dirs: Sequence, class_names: Sequence[str] | None = None) -> list[Path]:
    """Expand and check run paths without loading any model; return the run paths.

    Raises FileNotFoundError for a path without a model, and (when `class_names` is given)
    ValueError for a run whose class_names.json / config.json names other classes.
    """
    paths = expand_run_dirs(run_dirs)
    if not paths:
        raise ValueError("Give at least one run folder (or .keras file) to compare.")
    for path in paths:
        _check_run_classes(path, class_names)
    return paths


def _check_run_classes(path: Path, data_class_names: Sequence[str] | None) -> None:
    """Raise FileNotFoundError / ValueError for a path that is no run, or a run trained on other classes."""
    from fer_utils.runs import MODEL_FILE, load_history, read_class_names, read_config, read_val_metrics

    path = Path(path)
    model_path = path / MODEL_FILE if path.is_dir() else path
    if not model_path.is_file():
        raise FileNotFoundError(
            f"No model at '{model_path}'. Pass run folders written by `python -m fer_utils train` "
            "(each holds model.keras), .keras files, or a folder that holds run folders."
        )
    folder = model_path.parent
    # Every file of the run is read (and checked) here, so a damaged one fails before any evaluation.
    config, names = read_config(folder), read_class_names(folder)
    read_val_metrics(folder)
    load_history(folder)
    names = names or config.get("class_names")
    if names and data_class_names is not None:
        align_class_names(np.zeros((0, len(names))), names, data_class_names)


def _gradcam_sample(labels: np.ndarray, count: int) -> np.ndarray:
    """Indices of up to `count` images for Grad-CAM: the first image of each class, then the next ones."""
    if count <= 0 or len(labels) == 0:
        return np.zeros(0, dtype=np.int64)
    firsts = [int(np.flatnonzero(labels == label)[0]) for label in np.unique(labels)]
    rest = [index for index in range(len(labels)) if index not in set(firsts)]
    return np.asarray((firsts + rest)[:count], dtype=np.int64)


def _slug(name: str) -> str:
    return "".join(character if character.isalnum() or character in "-_." else "_" for character in name)


def _save(figure, path: Path) -> str:
    from fer_utils import plots

    plots.save_figure(figure, path)
    return path.name


def _summary_markdown(results, mcnemar: pd.DataFrame, settings: dict, figures: dict, notes: list[str]) -> str:
    level = int(round(settings["confidence_level"] * 100))
    lines = [
        "# Model comparison",
        "",
        f"Data: `{settings['data']}` ({settings['n']} images). Test-time augmentation: "
        f"{'horizontal flip' if settings['tta'] else 'off'}. Confidence intervals: {level}% percentile "
        f"bootstrap over test images, {settings['n_boot']} resamples, seed {settings['seed']}; they "
        "reflect the finite test set, not the run-to-run variation of training.",
        "",
        markdown_table(formatted_summary(results)),
        "",
        "## McNemar's exact test (pairs of models)",
        "",
        "b = images only model A gets right, c = images only model B gets right; a small p-value means "
        "the two error rates differ. The Holm column corrects for testing every pair at once.",
        "",
    ]
    if len(mcnemar):
        table = mcnemar.assign(
            p_value=mcnemar["p_value"].map(lambda value: f"{value:.4g}"),
            p_value_holm=mcnemar["p_value_holm"].map(lambda value: f"{value:.4g}"),
        )
        headers = {
            "model_a": "model A", "model_b": "model B", "n_discordant": "b + c",
            "p_value": "p-value", "p_value_holm": "p-value (Holm, all pairs)",
        }
        lines.append(markdown_table(table.rename(columns=headers)))
    else:
        lines.append("Only one model: no pairs to test.")
    lines += ["", "## Figures", ""]
    lines += [f"- {key}: ![{key}]({file})" for key, file in figures.items()]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def format_report(result: EvaluationResult) -> str:
    """A plain-text report of one evaluation: headline metrics with CIs, speed, per-class table."""
    lines = [f"Model: {result.name}    images: {result.metrics['n']}    TTA: {'on' if result.tta else 'off'}"]
    for key, label in HEADLINE_METRICS:
        value = result.metrics[key]
        interval = result.confidence_intervals.get(key)
        text = _format_interval(value, interval, digits=4)
        if interval:
            text += f"  ({int(round(interval['level'] * 100))}% CI)"
        lines.append(f"  {label:<28} {text}")
    lines.append(f"  {'Inference speed (images/s)':<28} {_format_optional(result.images_per_second, '.1f')}")
    lines.append("")
    lines.append(result.per_class.to_string(float_format=lambda value: f"{value:.3f}"))
    return "\n".join(lines)


def load_summary(out_dir) -> dict:
    """Read a `summary.json` written by compare_runs."""
    path = Path(out_dir) / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(f"No summary.json in '{out_dir}'. Run `python -m fer_utils compare` first.")
    return json.loads(path.read_text(encoding="utf-8"))


def comparison_conclusion(
    results: Sequence[EvaluationResult],
    mcnemar: pd.DataFrame | None = None,
    tta_results: Sequence[EvaluationResult] = (),
    alpha: float = 0.05,
) -> str:
    """A short markdown conclusion computed from comparison results (no hard-coded claims).

    Names the most accurate single model with its confidence interval, says whether its lead over the
    runner-up is significant by McNemar's test at `alpha`, and reports what the ensemble and test-time
    augmentation changed.
    """
    singles = [result for result in results if not result.members]
    if not singles:
        raise ValueError("comparison_conclusion needs at least one single (non-ensemble) result.")

    def accuracy(result):
        return result.metrics["accuracy"]

    def with_interval(result, metric="accuracy"):
        interval = result.confidence_intervals.get(metric)
        value = result.metrics[metric]
        if interval:
            return f"{value:.1%} (95% CI {interval['low']:.1%} to {interval['high']:.1%})"
        return f"{value:.1%}"

    ranked = sorted(singles, key=accuracy, reverse=True)
    best = ranked[0]
    sentences = [
        f"On {best.metrics['n']:,} test images, **{best.name}** is the most accurate single model: "
        f"accuracy {with_interval(best)}, macro-F1 {best.metrics['macro_f1']:.3f}."
    ]
    if len(ranked) > 1:
        runner_up = ranked[1]
        pair = None
        if mcnemar is not None and not mcnemar.empty:
            names = {best.name, runner_up.name}
            rows = mcnemar[mcnemar.apply(lambda row: {row["model_a"], row["model_b"]} == names, axis=1)]
            pair = rows.iloc[0] if len(rows) else None
        verdict = ""
        if pair is not None:
            significant = pair["p_value"] < alpha
            verdict = (
                f" McNemar's exact test gives p = {pair['p_value']:.3g}, so the difference "
                + ("is significant" if significant else "is **not** significant")
                + f" at the {alpha:.0%} level."
            )
        sentences.append(
            f"{runner_up.name} reaches {with_interval(runner_up)} "
            f"({accuracy(best) - accuracy(runner_up):+.1%} for {best.name}).{verdict}"
        )
    for ensemble in (result for result in results if result.members):
        sentences.append(
            f"The ensemble of {len(ensemble.members)} models scores {accuracy(ensemble):.1%} "
            f"({accuracy(ensemble) - accuracy(best):+.1%} against {best.name})."
        )
    if tta_results:
        best_tta = max(tta_results, key=accuracy)
        sentences.append(
            f"With test-time augmentation the best configuration is {best_tta.name} at {accuracy(best_tta):.1%}."
        )
    fastest = max(singles, key=lambda result: result.images_per_second or 0.0)
    if fastest.images_per_second:
        sentences.append(f"The fastest at inference is {fastest.name}, {fastest.images_per_second:,.0f} images/s here.")
    return " ".join(sentences)


def chance_test(y_true, y_pred, num_classes: int | None = None) -> dict:
    """Test whether predictions beat chance, with chance defined by the predictions themselves.

    A classifier that ignores its input but predicts class c with frequency q_c scores, on labels
    with class frequencies pi_c, an expected accuracy of sum_c q_c * pi_c. That is the chance level
    here: always predicting the largest class scores exactly it, so a collapsed model never passes.
    The p-value is a one-sided exact binomial test of the observed number of correct predictions
    against that level.

    Returns:
        {"n", "correct", "accuracy", "chance_accuracy", "p_value"}.
    """
    from scipy.stats import binomtest

    labels = _as_labels(y_true)
    predictions = _as_labels(y_pred, "y_pred")
    if labels.shape != predictions.shape or labels.size == 0:
        raise ValueError(f"chance_test needs equally long, non-empty label arrays; got {labels.shape} and {predictions.shape}.")
    classes = num_classes or int(max(labels.max(), predictions.max()) + 1)
    count = labels.size
    correct = int((labels == predictions).sum())
    predicted_share = np.bincount(predictions, minlength=classes) / count
    true_share = np.bincount(labels, minlength=classes) / count
    chance = float(min(1.0, predicted_share @ true_share))
    return {
        "n": int(count),
        "correct": correct,
        "accuracy": correct / count,
        "chance_accuracy": chance,
        "p_value": float(binomtest(correct, count, chance, alternative="greater").pvalue),
    }
