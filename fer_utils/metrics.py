"""Metrics of (N, K) class probabilities (or predicted class indices) against (N,) integer labels."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

# Probabilities are clipped to [LOG_LOSS_EPSILON, 1] before the log, as Keras does in its
# cross-entropy, so a test log loss is comparable with the training history's `val_loss`.
LOG_LOSS_EPSILON = 1e-7


def _as_labels(y_true, name: str = "y_true") -> np.ndarray:
    """`y_true` as a 1-D int64 array, or a ValueError saying what is wrong."""
    labels = np.asarray(y_true)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of integer class indices; got shape {labels.shape}.")
    if labels.size and not np.issubdtype(labels.dtype, np.integer) and not np.all(np.mod(labels, 1) == 0):
        raise ValueError(f"{name} must hold integer class indices; got dtype {labels.dtype}.")
    return labels.astype(np.int64)


def _as_proba(proba, num_samples: int | None = None) -> np.ndarray:
    """`proba` as an (N, K) float64 array with one row per label."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2:
        raise ValueError(f"proba must be an (N, num_classes) array of probabilities; got shape {proba.shape}.")
    if num_samples is not None and proba.shape[0] != num_samples:
        raise ValueError(f"proba has {proba.shape[0]} rows but there are {num_samples} labels; they must match.")
    return proba


def _as_predictions(pred_or_proba, num_samples: int | None = None) -> np.ndarray:
    """Predicted class indices (N,) from indices (N,) or probabilities (N, K)."""
    array = np.asarray(pred_or_proba)
    predictions = _as_labels(array.argmax(axis=1) if array.ndim == 2 else array, name="predictions")
    if num_samples is not None and predictions.shape[0] != num_samples:
        raise ValueError(f"There are {predictions.shape[0]} predictions but {num_samples} labels; they must match.")
    return predictions


def _num_classes(y_pred, labels: np.ndarray, predictions: np.ndarray) -> int:
    """The number of classes: the columns of a probability matrix, else one more than the largest index."""
    if np.ndim(y_pred) == 2:
        return int(np.shape(y_pred)[1])
    return int(max(labels.max(initial=-1), predictions.max(initial=-1))) + 1


def _check_label_range(labels: np.ndarray, num_classes: int, name: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{name} holds class indices outside 0..{num_classes - 1} (found {labels.min()}.."
                         f"{labels.max()}); check the class names and the labels.")


def confusion(y_true, y_pred, num_classes: int | None = None, normalize: str | None = None) -> np.ndarray:
    """The confusion matrix, rows true, columns predicted (`normalize="true"`: each row over its count)."""
    labels = _as_labels(y_true)
    predictions = _as_predictions(y_pred, labels.shape[0])
    num_classes = num_classes or _num_classes(y_pred, labels, predictions)
    _check_label_range(labels, num_classes, "y_true")
    _check_label_range(predictions, num_classes, "y_pred")
    matrix = np.bincount(labels * num_classes + predictions, minlength=num_classes**2).reshape(num_classes, num_classes)
    if normalize is None:
        return matrix
    if normalize != "true":
        raise ValueError(f"normalize must be None or 'true' (divide each row by its count); got {normalize!r}.")
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=np.float64), where=totals > 0)


def _scores_from_confusion(matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 and support of a (..., K, K) confusion matrix; NaN where undefined."""
    true_positives = np.diagonal(matrix, axis1=-2, axis2=-1).astype(np.float64)
    support = matrix.sum(axis=-1).astype(np.float64)
    predicted = matrix.sum(axis=-2).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positives / predicted, np.nan)
        recall = np.where(support > 0, true_positives / support, np.nan)
        # 2 TP / (support + predicted) is the harmonic mean of precision and recall, 0 (not NaN) when one is 0.
        f1 = np.where(support + predicted > 0, 2 * true_positives / (support + predicted), np.nan)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def _macro_f1_from_confusion(matrix: np.ndarray) -> np.ndarray:
    # The mean over classes that occur in the labels or the predictions (scikit-learn's default).
    return np.nanmean(_scores_from_confusion(matrix)["f1"], axis=-1)


def _balanced_accuracy_from_confusion(matrix: np.ndarray) -> np.ndarray:
    # The mean recall over classes that occur in the labels (scikit-learn's definition).
    return np.nanmean(_scores_from_confusion(matrix)["recall"], axis=-1)


def reliability_bins(y_true, proba, n_bins: int = 15) -> pd.DataFrame:
    """Samples grouped by top probability into `n_bins` equal bins (b/n, (b+1)/n]: lower, upper, count,
    confidence (mean top probability), accuracy; the last two NaN for an empty bin."""
    labels = _as_labels(y_true)
    proba = _as_proba(proba, labels.shape[0])
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1; got {n_bins}.")
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == labels).astype(np.float64)
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_confidence = np.where(counts > 0, np.bincount(bins, confidence, n_bins) / counts, np.nan)
        accuracy = np.where(counts > 0, np.bincount(bins, correct, n_bins) / counts, np.nan)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame({"lower": edges[:-1], "upper": edges[1:], "count": counts,
                         "confidence": mean_confidence, "accuracy": accuracy})


def compute_metrics(y_true, proba, class_names: Sequence[str] | None = None, n_bins: int = 15) -> dict:
    """`n`, `accuracy`, `balanced_accuracy`, `macro_f1`, `top2_accuracy`, `log_loss` and `ece` (expected
    calibration error: over `n_bins` confidence bins, the image share times |accuracy - confidence|)."""
    labels = _as_labels(y_true)
    proba = _as_proba(proba, labels.shape[0])
    num_classes = proba.shape[1]
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"proba has {num_classes} columns but {len(class_names)} class names were given: "
                         f"{list(class_names)}.")
    _check_label_range(labels, num_classes, "y_true")
    n = int(labels.shape[0])
    if n == 0:
        names = ("accuracy", "balanced_accuracy", "macro_f1", "top2_accuracy", "log_loss", "ece")
        return {"n": 0, **dict.fromkeys(names, float("nan"))}
    matrix = confusion(labels, proba.argmax(axis=1), num_classes)
    # Stable sort of the negated probabilities: on ties the lower class index ranks first.
    top2 = np.argsort(-proba, axis=1, kind="stable")[:, : min(2, num_classes)]
    true_class_proba = np.clip(proba[np.arange(n), labels], LOG_LOSS_EPSILON, 1.0)
    bins = reliability_bins(labels, proba, n_bins=n_bins)
    filled = bins[bins["count"] > 0]
    return {
        "n": n,
        "accuracy": float(np.trace(matrix) / n),
        "balanced_accuracy": float(_balanced_accuracy_from_confusion(matrix)),
        "macro_f1": float(_macro_f1_from_confusion(matrix)),
        "top2_accuracy": float(np.mean(np.any(top2 == labels[:, None], axis=1))),
        "log_loss": float(-np.mean(np.log(true_class_proba))),
        "ece": float((filled["count"] / n * (filled["accuracy"] - filled["confidence"]).abs()).sum()),
    }


def per_class_table(y_true, y_pred, class_names: Sequence[str]) -> pd.DataFrame:
    """Per-class precision, recall, F1 (0 where undefined, as in scikit-learn) and support by class name."""
    labels = _as_labels(y_true)
    scores = _scores_from_confusion(confusion(labels, _as_predictions(y_pred, labels.shape[0]), len(class_names)))
    columns = {key: np.nan_to_num(scores[key]) for key in ("precision", "recall", "f1")}
    columns["support"] = scores["support"].astype(np.int64)
    return pd.DataFrame(columns, index=pd.Index(list(class_names), name="class"))


def align_class_names(proba, model_class_names: Sequence[str], data_class_names: Sequence[str]) -> np.ndarray:
    """Reorder probability columns from the model's class order to the data's, matching the names."""
    proba = np.asarray(proba)
    model_class_names = [str(name) for name in model_class_names]
    data_class_names = [str(name) for name in data_class_names]
    if proba.ndim != 2 or proba.shape[1] != len(model_class_names):
        raise ValueError(f"The model returns {proba.shape[-1] if proba.ndim else 0} probabilities per image but "
                         f"names {len(model_class_names)} classes ({model_class_names}); its class_names.json does "
                         "not match it.")
    if len(set(model_class_names)) != len(model_class_names):
        raise ValueError(f"The model's class names contain duplicates: {model_class_names}.")
    if sorted(model_class_names) != sorted(data_class_names):
        raise ValueError("The model's classes do not match the data's classes, so its outputs cannot be compared "
                         f"with the labels. Model: {model_class_names}; data: {data_class_names}. Evaluate the "
                         "model on data with the classes it was trained on.")
    return proba[:, [model_class_names.index(name) for name in data_class_names]]
