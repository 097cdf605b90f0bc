"""Statistics over test images: bootstrap confidence intervals, McNemar's test, Holm, chance level."""

from __future__ import annotations

import numpy as np

from fer_utils.metrics import (
    _as_labels,
    _as_predictions,
    _balanced_accuracy_from_confusion,
    _check_label_range,
    _macro_f1_from_confusion,
    _num_classes,
)

METRICS = {
    "accuracy": lambda matrices: np.trace(matrices, axis1=-2, axis2=-1) / np.maximum(matrices.sum(axis=(-2, -1)), 1),
    "macro_f1": _macro_f1_from_confusion,
    "balanced_accuracy": _balanced_accuracy_from_confusion,
}
# Resamples per batch: each batch's confusion matrices take (chunk x images) memory.
_CHUNK = 250


def bootstrap_ci(y_true, y_pred, metric: str = "accuracy", n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                 num_classes: int | None = None) -> dict:
    """Seeded percentile bootstrap interval (images resampled `n_boot` times) of "accuracy", "macro_f1" or
    "balanced_accuracy": {"estimate" (on all images), "low", "high", "level", "n_boot"}."""
    labels = _as_labels(y_true)
    predictions = _as_predictions(y_pred, labels.shape[0])
    if metric not in METRICS:
        raise ValueError(f"Unknown metric {metric!r}; use one of {sorted(METRICS)}.")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (for example 0.95); got {level}.")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1; got {n_boot}.")
    n = labels.shape[0]
    if n == 0:
        raise ValueError("bootstrap_ci needs at least one labelled sample; the split is empty.")
    classes = num_classes or _num_classes(y_pred, labels, predictions)
    _check_label_range(labels, classes, "y_true")
    _check_label_range(predictions, classes, "y_pred")
    cells = classes * classes
    codes = labels * classes + predictions
    estimate = float(METRICS[metric](np.bincount(codes, minlength=cells).reshape(classes, classes)))
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for start in range(0, n_boot, _CHUNK):
        size = min(_CHUNK, n_boot - start)
        samples = rng.integers(0, n, size=(size, n))
        # One bincount over (resample offset + cell code) gives every resample's confusion matrix.
        counts = np.bincount((codes[samples] + np.arange(size)[:, None] * cells).ravel(), minlength=size * cells)
        values[start : start + size] = METRICS[metric](counts.reshape(size, classes, classes))
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.nanpercentile(values, [tail, 100.0 - tail])
    return {"estimate": estimate, "low": float(low), "high": float(high), "level": level, "n_boot": int(n_boot)}


def mcnemar_exact(y_true, pred_a, pred_b) -> dict:
    """McNemar's exact test: do models A and B have the same error rate? `b`: images A gets right and B
    wrong, `c`: the reverse; two-sided, b ~ Binomial(b + c, 1/2) under the null."""
    from scipy.stats import binomtest

    labels = _as_labels(y_true)
    correct_a = _as_predictions(pred_a, labels.shape[0]) == labels
    correct_b = _as_predictions(pred_b, labels.shape[0]) == labels
    b, c = int(np.sum(correct_a & ~correct_b)), int(np.sum(~correct_a & correct_b))
    p_value = 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)
    return {"b": b, "c": c, "n_discordant": b + c, "p_value": min(p_value, 1.0)}


def holm_adjust(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (controls the family-wise error rate over all pairs)."""
    p_values = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(p_values.size)
    adjusted[order] = np.maximum.accumulate(np.minimum(1.0, (p_values.size - np.arange(p_values.size)) * p_values[order]))
    return adjusted


def chance_test(y_true, y_pred, num_classes: int | None = None) -> dict:
    """Do predictions beat the chance level of their own class frequencies (one-sided exact binomial test)?
    Predicting class c at rate q_c blindly scores sum_c q_c * pi_c, so a one-class model never passes."""
    from scipy.stats import binomtest

    labels = _as_labels(y_true)
    predictions = _as_labels(y_pred, "y_pred")
    if labels.shape != predictions.shape or labels.size == 0:
        raise ValueError(f"chance_test needs equally long, non-empty label arrays; got {labels.shape} and {predictions.shape}.")
    classes = num_classes or int(max(labels.max(), predictions.max()) + 1)
    count = labels.size
    correct = int((labels == predictions).sum())
    chance = float(min(1.0, np.bincount(predictions, minlength=classes) @ np.bincount(labels, minlength=classes) / count**2))
    p_value = float(binomtest(correct, count, chance, alternative="greater").pvalue)
    return {"n": int(count), "correct": correct, "accuracy": correct / count, "chance_accuracy": chance,
            "p_value": p_value}
