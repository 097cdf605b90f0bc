"""Tests of fer_utils.metrics, stats, evaluation and the report tables: metrics against hand-computed
values, CIs, McNemar, TTA, ensembles."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk_metrics

from fer_utils import CLASS_NAMES, evaluation, metrics, report, runs, stats
from fer_utils.data import Split

# Six images, three classes. Predictions (argmax): 0, 1, 1, 2, 2, 1 against labels 0, 0, 1, 1, 2, 2.
Y_TRUE = np.array([0, 0, 1, 1, 2, 2])
PROBA = np.array(
    [
        [0.70, 0.20, 0.10],  # true 0, predicted 0 (right)
        [0.30, 0.60, 0.10],  # true 0, predicted 1 (wrong; true class second)
        [0.20, 0.50, 0.30],  # true 1, predicted 1 (right)
        [0.15, 0.05, 0.80],  # true 1, predicted 2 (wrong; true class third)
        [0.10, 0.20, 0.70],  # true 2, predicted 2 (right)
        [0.30, 0.45, 0.25],  # true 2, predicted 1 (wrong; true class third)
    ]
)
NAMES = ("a", "b", "c")


class RecordingModel:
    """A stand-in for a Keras model: fixed outputs per image, and a record of every input it saw."""

    def __init__(self, proba_fn, outputs=7):
        self.proba_fn = proba_fn
        self.calls = []
        self.output_shape = (None, outputs)

    def predict(self, images, batch_size=None, verbose=0):
        self.calls.append(np.array(images))
        return self.proba_fn(np.asarray(images))


def _split(images, labels, class_names=CLASS_NAMES):
    return Split(np.asarray(images, np.uint8), np.asarray(labels, np.int64), tuple(class_names), "test arrays")


# ---------------------------------------------------------------------------------------------
# Metrics on fixed predictions
# ---------------------------------------------------------------------------------------------
def test_compute_metrics_matches_hand_computed_values():
    scores = metrics.compute_metrics(Y_TRUE, PROBA, NAMES)
    assert scores["n"] == 6
    assert scores["accuracy"] == pytest.approx(3 / 6)
    # Recall is 1/2 for every class.
    assert scores["balanced_accuracy"] == pytest.approx(0.5)
    # F1 per class = 2 TP / (2 TP + FP + FN): 2/3, 2/5, 2/4.
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 2 / 5 + 2 / 4) / 3)
    # The true class is among the top two for images 0, 1, 2 and 4.
    assert scores["top2_accuracy"] == pytest.approx(4 / 6)
    assert scores["log_loss"] == pytest.approx(-np.mean(np.log([0.7, 0.3, 0.5, 0.05, 0.7, 0.25])))


def test_metrics_agree_with_scikit_learn():
    scores = metrics.compute_metrics(Y_TRUE, PROBA, NAMES)
    predictions = PROBA.argmax(axis=1)
    assert scores["macro_f1"] == pytest.approx(sk_metrics.f1_score(Y_TRUE, predictions, average="macro"))
    assert scores["balanced_accuracy"] == pytest.approx(sk_metrics.balanced_accuracy_score(Y_TRUE, predictions))
    assert scores["log_loss"] == pytest.approx(sk_metrics.log_loss(Y_TRUE, PROBA))
    assert scores["top2_accuracy"] == pytest.approx(sk_metrics.top_k_accuracy_score(Y_TRUE, PROBA, k=2))


def test_per_class_table_values_and_layout():
    table = metrics.per_class_table(Y_TRUE, PROBA, NAMES)
    assert isinstance(table, pd.DataFrame)
    assert list(table.index) == list(NAMES)
    assert list(table.columns) == ["precision", "recall", "f1", "support"]
    np.testing.assert_allclose(table["precision"], [1.0, 1 / 3, 1 / 2])
    np.testing.assert_allclose(table["recall"], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(table["f1"], [2 / 3, 2 / 5, 1 / 2])
    assert table["support"].tolist() == [2, 2, 2]


def test_per_class_table_reports_zero_for_a_class_never_predicted_or_present():
    table = metrics.per_class_table([0, 0, 1], [0, 0, 0], NAMES)
    assert table.loc["b", "precision"] == 0.0 and table.loc["b", "recall"] == 0.0
    assert table.loc["c"].tolist() == [0.0, 0.0, 0.0, 0]


def test_macro_f1_averages_only_classes_seen_in_labels_or_predictions():
    # Class 2 never occurs: like scikit-learn, it does not drag the macro average down.
    y_true, y_pred = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    proba = np.eye(3)[y_pred]
    expected = sk_metrics.f1_score(y_true, y_pred, average="macro")
    assert metrics.compute_metrics(y_true, proba)["macro_f1"] == pytest.approx(expected)


def test_confusion_rows_are_true_classes_and_columns_predictions():
    matrix = metrics.confusion([0, 0, 0, 2], [1, 1, 1, 2], num_classes=3)
    assert matrix[0, 1] == 3 and matrix[1, 0] == 0
    assert matrix[2, 2] == 1
    np.testing.assert_array_equal(
        metrics.confusion(Y_TRUE, PROBA), [[1, 1, 0], [0, 1, 1], [0, 1, 1]]
    )
    np.testing.assert_array_equal(
        metrics.confusion(Y_TRUE, PROBA), sk_metrics.confusion_matrix(Y_TRUE, PROBA.argmax(1))
    )


def test_row_normalised_confusion_gives_recall_and_zero_rows_for_absent_classes():
    normalized = metrics.confusion([0, 0, 0, 1], [0, 0, 1, 1], num_classes=3, normalize="true")
    np.testing.assert_allclose(normalized, [[2 / 3, 1 / 3, 0], [0, 1, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="normalize"):
        metrics.confusion([0], [0], num_classes=2, normalize="all")


def test_expected_calibration_error_by_hand():
    # Four bins of width 0.25. Bin (0.25, 0.5]: confidences 0.5 (right), 0.45 (wrong) -> |0.5 - 0.475|.
    # Bin (0.5, 0.75]: 0.7 (right), 0.6 (wrong), 0.7 (right) -> accuracy 2/3 = confidence 2/3, gap 0.
    # Bin (0.75, 1]: 0.8 (wrong) -> gap 0.8.
    expected = 2 / 6 * 0.025 + 3 / 6 * 0.0 + 1 / 6 * 0.8
    assert metrics.compute_metrics(Y_TRUE, PROBA, n_bins=4)["ece"] == pytest.approx(expected)
    bins = metrics.reliability_bins(Y_TRUE, PROBA, n_bins=4)
    assert bins["count"].tolist() == [0, 2, 3, 1]
    assert bins["accuracy"].iloc[2] == pytest.approx(2 / 3)


def test_perfectly_confident_and_right_model_has_zero_calibration_error():
    labels = np.array([0, 1, 2, 1])
    assert metrics.compute_metrics(labels, np.eye(3)[labels])["ece"] == pytest.approx(0.0)


def test_metrics_reject_mismatched_shapes_and_labels():
    with pytest.raises(ValueError, match="rows"):
        metrics.compute_metrics(Y_TRUE[:3], PROBA)
    with pytest.raises(ValueError, match="outside"):
        metrics.compute_metrics([0, 5], np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="class names"):
        metrics.compute_metrics(Y_TRUE, PROBA, ("a", "b"))


# ---------------------------------------------------------------------------------------------
# Bootstrap confidence intervals and McNemar
# ---------------------------------------------------------------------------------------------
def _noisy_predictions(n=600, num_classes=7, accuracy=0.6, seed=1):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n)
    predictions = np.where(rng.random(n) < accuracy, labels, rng.integers(0, num_classes, n))
    return labels, predictions


def test_bootstrap_is_deterministic_by_seed_and_contains_the_estimate():
    labels, predictions = _noisy_predictions()
    for metric in ("accuracy", "macro_f1", "balanced_accuracy"):
        first = stats.bootstrap_ci(labels, predictions, metric, n_boot=300, seed=3)
        again = stats.bootstrap_ci(labels, predictions, metric, n_boot=300, seed=3)
        other = stats.bootstrap_ci(labels, predictions, metric, n_boot=300, seed=4)
        assert first == again
        assert (first["low"], first["high"]) != (other["low"], other["high"])
        assert first["low"] < first["estimate"] < first["high"]
        assert first["level"] == 0.95 and first["n_boot"] == 300
    accuracy = stats.bootstrap_ci(labels, predictions, "accuracy", n_boot=300, seed=3)
    assert accuracy["estimate"] == pytest.approx(np.mean(labels == predictions))
    # The normal-approximation half-width for a proportion is about 1.96 * sqrt(p (1 - p) / n).
    half_width = 1.96 * math.sqrt(accuracy["estimate"] * (1 - accuracy["estimate"]) / len(labels))
    assert (accuracy["high"] - accuracy["low"]) / 2 == pytest.approx(half_width, rel=0.25)


def test_vectorised_bootstrap_equals_a_per_resample_loop_with_the_same_seed():
    labels, predictions = _noisy_predictions(n=200)
    vectorised = stats.bootstrap_ci(labels, predictions, "macro_f1", n_boot=120, seed=7)
    # The same resamples (one batch of 120 draws), scored one by one by scikit-learn.
    samples = np.random.default_rng(7).integers(0, len(labels), size=(120, len(labels)))
    looped = [sk_metrics.f1_score(labels[sample], predictions[sample], average="macro") for sample in samples]
    assert vectorised["estimate"] == pytest.approx(sk_metrics.f1_score(labels, predictions, average="macro"))
    np.testing.assert_allclose([vectorised["low"], vectorised["high"]], np.percentile(looped, [2.5, 97.5]))


def test_bootstrap_accepts_probabilities_and_rejects_bad_arguments():
    from_proba = stats.bootstrap_ci(Y_TRUE, PROBA, "accuracy", n_boot=50, seed=0)
    from_labels = stats.bootstrap_ci(Y_TRUE, PROBA.argmax(1), "accuracy", n_boot=50, seed=0)
    assert from_proba == from_labels
    with pytest.raises(ValueError, match="level"):
        stats.bootstrap_ci(Y_TRUE, PROBA, level=95)
    with pytest.raises(ValueError, match="Unknown metric"):
        stats.bootstrap_ci(Y_TRUE, PROBA, "precision")


@pytest.mark.parametrize(
    ("b", "c", "expected"),
    [
        (1, 9, 2 * (1 + 10) / 2**10),  # 2 P(X <= 1), X ~ Binomial(10, 1/2)
        (0, 6, 2 / 2**6),
        (5, 5, 1.0),
        (0, 0, 1.0),  # no discordant pairs: indistinguishable
    ],
)
def test_mcnemar_exact_on_known_tables(b, c, expected):
    # Build predictions with b images only A gets right, c only B gets right, plus agreements.
    both_right, both_wrong = 7, 3
    labels = np.zeros(b + c + both_right + both_wrong, dtype=int)
    pred_a = np.concatenate([np.zeros(b), np.ones(c), np.zeros(both_right), np.ones(both_wrong)]).astype(int)
    pred_b = np.concatenate([np.ones(b), np.zeros(c), np.zeros(both_right), np.ones(both_wrong)]).astype(int)
    result = stats.mcnemar_exact(labels, pred_a, pred_b)
    assert (result["b"], result["c"], result["n_discordant"]) == (b, c, b + c)
    assert result["p_value"] == pytest.approx(expected)


def test_mcnemar_is_symmetric_in_the_two_models():
    labels, predictions = _noisy_predictions(n=100)
    other = np.where(np.arange(100) % 3 == 0, labels, predictions)
    forward = stats.mcnemar_exact(labels, predictions, other)
    backward = stats.mcnemar_exact(labels, other, predictions)
    assert (forward["b"], forward["c"]) == (backward["c"], backward["b"])
    assert forward["p_value"] == pytest.approx(backward["p_value"])


# ---------------------------------------------------------------------------------------------
# Class names, TTA, ensembles, model evaluation
# ---------------------------------------------------------------------------------------------
def test_align_class_names_reorders_columns_by_name():
    proba = np.array([[0.1, 0.2, 0.7]])
    aligned = metrics.align_class_names(proba, ["c", "a", "b"], ["a", "b", "c"])
    np.testing.assert_allclose(aligned, [[0.2, 0.7, 0.1]])


def test_class_name_mismatch_is_a_clear_error_naming_both_lists():
    with pytest.raises(ValueError) as error:
        metrics.align_class_names(np.zeros((1, 3)), ["a", "b", "x"], ["a", "b", "c"])
    message = str(error.value)
    assert "['a', 'b', 'x']" in message and "['a', 'b', 'c']" in message


def test_evaluate_model_with_tta_averages_each_face_and_its_mirror_image():
    images = np.zeros((2, 48, 48, 1), np.uint8)
    images[:, :, :24] = 200  # bright left half

    def left_brightness(batch):
        # Class 0 probability = share of brightness on the left half of the face.
        share = batch[:, :, :24].sum(axis=(1, 2, 3)) / batch.sum(axis=(1, 2, 3))
        return np.stack([share, 1 - share], axis=1)

    model = RecordingModel(left_brightness, outputs=2)
    run = runs.Run(path=None, model=model, config={}, history=None, class_names=("a", "b"), val_metrics={})
    split = _split(images, [0, 1], class_names=("a", "b"))
    np.testing.assert_allclose(evaluation.evaluate_model(run, split, n_boot=0).proba, [[1, 0], [1, 0]])
    augmented = evaluation.evaluate_model(run, split, tta=True, n_boot=0)
    assert augmented.tta
    np.testing.assert_allclose(augmented.proba, [[0.5, 0.5], [0.5, 0.5]])
    # One call (one inference pass) saw the images followed by exactly their left-right mirrors.
    np.testing.assert_array_equal(model.calls[-1][:2], images.astype(np.float32))
    np.testing.assert_array_equal(model.calls[-1][2:], images[:, :, ::-1].astype(np.float32))


def test_ensemble_of_two_fixed_models_equals_the_manual_average():
    rng = np.random.default_rng(0)
    labels = np.arange(14) % 7
    images = rng.integers(0, 255, (14, 48, 48, 1), dtype=np.uint8)
    proba_a = rng.dirichlet(np.ones(7), size=14)
    proba_b = rng.dirichlet(np.ones(7), size=14)
    model_a = RecordingModel(lambda batch: proba_a[: len(batch)])
    model_b = RecordingModel(lambda batch: proba_b[: len(batch)])
    split = _split(images, labels)
    members = [evaluation.evaluate_model(model, split, n_boot=0, name=name) for model, name in ((model_a, "a"), (model_b, "b"))]
    ensemble = evaluation.ensemble_result(members, n_boot=50)
    manual = (proba_a + proba_b) / 2
    np.testing.assert_allclose(ensemble.proba, manual)
    assert ensemble.metrics == metrics.compute_metrics(labels, manual, CLASS_NAMES)
    assert ensemble.members == ("a", "b") and set(ensemble.confidence_intervals) == {"accuracy", "macro_f1"}


def test_evaluate_model_reorders_classes_by_name_and_measures_speed():
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 3])
    images = np.zeros((8, 48, 48, 1), np.uint8)
    reversed_names = tuple(reversed(CLASS_NAMES))
    # The model's outputs are in reversed class order; it always predicts the true class.
    model = RecordingModel(lambda batch: np.eye(7)[6 - labels[: len(batch)]])
    run = runs.Run(path=None, model=model, config={}, history=None, class_names=reversed_names, val_metrics={})
    result = evaluation.evaluate_model(run, _split(images, labels), n_boot=100, name="rev")
    assert result.name == "rev"
    assert result.metrics["accuracy"] == 1.0
    np.testing.assert_array_equal(result.y_pred, labels)
    assert result.class_names == CLASS_NAMES
    assert result.images_per_second > 0
    assert set(result.confidence_intervals) == {"accuracy", "macro_f1"}
    np.testing.assert_array_equal(np.diag(result.confusion), np.bincount(labels, minlength=7))


def test_evaluate_model_refuses_a_model_trained_on_other_classes():
    other_names = CLASS_NAMES[:-1] + ("contempt",)
    model = RecordingModel(lambda batch: np.full((len(batch), 7), 1 / 7))
    split = _split(np.zeros((2, 48, 48, 1)), [0, 1])
    with pytest.raises(ValueError, match="contempt"):
        evaluation.evaluate_model(runs.Run(None, model, {}, None, other_names, {}), split)
    assert model.calls == []  # The mismatch is found before any prediction.


def test_result_to_dict_is_json_ready():
    import json

    result = evaluation.evaluate_proba(Y_TRUE, PROBA, NAMES, name="fixed", n_boot=20)
    payload = json.loads(json.dumps(result.to_dict()))
    for key in ("accuracy", "macro_f1", "balanced_accuracy", "n", "class_names", "confusion_matrix", "per_class"):
        assert key in payload
    assert payload["confusion_matrix"] == [[1, 1, 0], [0, 1, 1], [0, 1, 1]]
    assert payload["per_class"]["a"]["precision"] == pytest.approx(1.0)


def test_summary_and_mcnemar_tables():
    first = evaluation.evaluate_proba(Y_TRUE, PROBA, NAMES, name="first", n_boot=20, n_params=10, training_time_s=5.0)
    second = evaluation.evaluate_proba(Y_TRUE, np.eye(3)[Y_TRUE], NAMES, name="second", n_boot=20)
    summary = report.summary_table([first, second])
    assert summary["model"].tolist() == ["first", "second"]
    assert {"parameters", "training_time_s", "images_per_s", "accuracy_ci_low", "macro_f1_ci_high", "f1_a"} <= set(summary)
    assert summary.loc[1, "accuracy"] == 1.0
    table = report.mcnemar_table([first, second])
    assert table.loc[0, ["b", "c"]].tolist() == [0, 3]
    assert table.loc[0, "p_value"] == pytest.approx(0.25)
    assert table.loc[0, "p_value_holm"] == pytest.approx(0.25)  # a single pair: nothing to adjust
    ensemble = evaluation.ensemble_result([first, second])
    assert ensemble.members == ("first", "second")
    np.testing.assert_allclose(ensemble.proba, (PROBA + np.eye(3)[Y_TRUE]) / 2)


def test_holm_adjustment_by_hand():
    # Sorted p-values 0.01, 0.02, 0.04 are multiplied by 3, 2, 1 and made non-decreasing.
    np.testing.assert_allclose(stats.holm_adjust([0.04, 0.01, 0.02]), [0.04, 0.03, 0.04])
    np.testing.assert_allclose(stats.holm_adjust([0.5, 0.6]), [1.0, 1.0])


def test_training_time_from_config_variants():
    assert evaluation._training_time({"wall_time_s": 12.5}) == 12.5
    assert evaluation._training_time({"wall_time_s": {"head": 10, "finetune": 20}}) == 30.0
    assert evaluation._training_time({"wall_time_s": {"head": 10, "total": 11}}) == 11.0
    assert evaluation._training_time({}) is None


def test_comparison_conclusion_is_computed_from_results():
    import numpy as np

    from fer_utils import evaluation, report

    y_true = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    good = np.eye(3)[y_true] * 0.9 + 0.1 / 3
    worse = good.copy()
    worse[:3] = np.eye(3)[[1, 2, 0]]
    class_names = ("a", "b", "c")
    result_good = evaluation.evaluate_proba(y_true, good, class_names, name="good", n_boot=50, images_per_second=100.0)
    result_worse = evaluation.evaluate_proba(y_true, worse, class_names, name="worse", n_boot=50, images_per_second=300.0)
    mcnemar = report.mcnemar_table([result_good, result_worse])
    text = report.comparison_conclusion([result_good, result_worse], mcnemar)
    assert "**good** is the most accurate" in text
    assert "accuracy 100.0%" in text
    assert "worse reaches 62.5%" in text and "+37.5 percentage points below" not in text
    assert "37.5 percentage points below" in text
    flipped = evaluation.evaluate_proba(y_true, worse, class_names, name="good + TTA", n_boot=0)
    with_tta = report.comparison_conclusion([result_good, result_worse], mcnemar, [flipped])
    assert "Flip test-time augmentation changed accuracy by -37.5 percentage points for good." in with_tta
    assert "is **not** significant" in text  # 3 discordant pairs cannot reach p < 0.05
    assert "fastest at inference is worse" in text


def test_chance_test_rejects_a_collapsed_model_and_accepts_a_learned_one():
    import numpy as np

    from fer_utils import stats

    y_true = np.array([0] * 30 + [1] * 10 + [2] * 10)
    collapsed = stats.chance_test(y_true, np.zeros_like(y_true))
    assert collapsed["accuracy"] == 0.6
    assert collapsed["chance_accuracy"] == 0.6  # always the largest class is exactly chance
    assert collapsed["p_value"] > 0.5
    learned = y_true.copy()
    learned[:5] = 1  # 45 of 50 right
    result = stats.chance_test(y_true, learned)
    assert result["correct"] == 45
    assert result["chance_accuracy"] == pytest.approx((25 / 50) * (30 / 50) + (15 / 50) * (10 / 50) + (10 / 50) * (10 / 50))
    assert result["p_value"] < 1e-6
    with pytest.raises(ValueError, match="equally long"):
        stats.chance_test(y_true, learned[:-1])
