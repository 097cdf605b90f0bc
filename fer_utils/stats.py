"""Statistics over test images: bootstrap confidence intervals, McNemar's test, Holm, chance level.

- `bootstrap_ci`: a seeded percentile bootstrap interval of a metric over test images.
- `mcnemar_exact`: do two models have the same error rate on the same images?
- `holm_adjust`: Holm-Bonferroni adjusted p-values for testing several pairs at once.
- `chance_test`: do predictions beat the chance level their own class frequencies give?

Pure numpy (and scipy for the binomial tests, imported inside the functions that need it); the
input checks and confusion-matrix scores come from `fer_utils.metrics`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from fer_utils.metrics import (
    _as_labels,
    _as_predictions,
    _balanced_accuracy_from_confusion,
    _check_label_range,
    _macro_f1_from_confusion,
    _num_classes,
    confusion,
)

# Metrics that `bootstrap_ci` computes for all resamples at once.
VECTORISED_METRICS = ("accuracy", "macro_f1", "balanced_accuracy")


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



def holm_adjust(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (controls the family-wise error rate over all pairs)."""
    p_values = np.asarray(p_values, dtype=np.float64)
    count = p_values.size
    order = np.argsort(p_values, kind="stable")
    scaled = np.minimum(1.0, (count - np.arange(count)) * p_values[order])
    adjusted = np.empty(count)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted



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
