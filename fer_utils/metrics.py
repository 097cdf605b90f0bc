"""Metrics of class probabilities against integer labels: pure numpy and pandas, no model.

Inputs are `y_true`, integer labels (N,), and `proba`, an (N, K) matrix of class probabilities
(or, where it says so, predicted class indices (N,)). The functions check their inputs and raise a
ValueError that says what is wrong: `confusion`, `top_k_accuracy`, `log_loss`, `reliability_bins`,
`expected_calibration_error`, `compute_metrics` (the headline metrics), `per_class_table`, and
`align_class_names`, which reorders a model's probability columns into the data's class order.

The input checks (`_as_labels`, `_as_proba`, `_as_predictions`, `_num_classes`,
`_check_label_range`) and the scores from a confusion matrix are shared with `fer_utils.stats`
and `fer_utils.evaluation`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

# Probabilities are clipped to [LOG_LOSS_EPSILON, 1] before the log, the same epsilon Keras uses in
# its cross-entropy, so a test-set log loss is comparable with the `val_loss` of the training history.
LOG_LOSS_EPSILON = 1e-7


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
