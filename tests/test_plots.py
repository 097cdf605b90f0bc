"""Tests of fer_utils.plots: every function returns a Figure with the expected axes, titles and labels."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from fer_utils import CLASS_NAMES, metrics, plots


def _history(offset=0.0):
    # Three head epochs then three fine-tuning epochs, numbered continuously.
    return pd.DataFrame(
        {
            "epoch": [1, 2, 3, 4, 5, 6],
            "phase": ["head"] * 3 + ["finetune"] * 3,
            "loss": [1.8, 1.5, 1.3, 1.1, 1.0, 0.9],
            "accuracy": [0.3, 0.4, 0.45, 0.5, 0.55, 0.6],
            "val_loss": [1.7, 1.5, 1.4, 1.3, 1.25, 1.2],
            "val_accuracy": np.array([0.32, 0.4, 0.43, 0.48, 0.5, 0.52]) + offset,
        }
    )


def _predictions(n=70, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 7
    proba = rng.dirichlet(np.ones(7), size=n)
    proba[np.arange(n) < n // 2, labels[: n // 2]] += 2.0  # half the images are right
    return labels, proba / proba.sum(axis=1, keepdims=True)


def test_training_curves_give_each_phase_its_own_accuracy_and_loss_panels():
    figure = plots.plot_training_curves(_history(), title="Run A")
    assert isinstance(figure, Figure)
    titles = [axis.get_title() for axis in figure.axes]
    assert titles == ["phase 1: head, accuracy", "phase 2: finetune, accuracy",
                      "phase 1: head, loss", "phase 2: finetune, loss"]
    head_accuracy, finetune_accuracy, head_loss, _ = figure.axes
    assert head_accuracy.get_xlabel() == "Epoch" and head_loss.get_ylabel() == "Loss"
    assert [text.get_text() for text in head_accuracy.get_legend().get_texts()] == ["Training", "Validation"]
    # Each phase counts its own epochs from 1, whatever the history's numbering.
    np.testing.assert_array_equal(finetune_accuracy.get_lines()[1].get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(finetune_accuracy.get_lines()[1].get_ydata(), [0.48, 0.5, 0.52])
    assert figure.get_suptitle() == "Run A"


def test_a_one_epoch_phase_still_gets_a_visible_panel():
    history = _history().iloc[:4]
    figure = plots.plot_training_curves(history)
    head, finetune = figure.axes[:2]
    assert finetune.get_xlim() == (0.5, 1.5)
    assert finetune.get_position().width > 0.2 * head.get_position().width
    single = plots.plot_training_curves(history.drop(columns="phase"))
    assert len(single.axes) == 2 and single.axes[0].get_title() == "Accuracy per epoch"


def test_validation_curves_show_one_line_per_run_in_each_phase():
    figure = plots.plot_validation_curves({"vgg16": _history(), "resnet50": _history(0.05)})
    assert [axis.get_title() for axis in figure.axes][:2] == ["phase 1: head, accuracy", "phase 2: finetune, accuracy"]
    assert [text.get_text() for text in figure.axes[0].get_legend().get_texts()] == ["vgg16", "resnet50"]
    np.testing.assert_allclose(figure.axes[1].get_lines()[1].get_ydata(), [0.53, 0.55, 0.57])
    assert figure.get_suptitle() == "Validation curves"
    with pytest.raises(ValueError):
        plots.plot_validation_curves({})


def test_confusion_matrices_one_per_row_row_normalised_with_counts():
    labels, proba = _predictions()
    matrix = metrics.confusion(labels, proba, 7)
    figure = plots.plot_confusion_matrices({"model A": matrix, "model B": matrix}, CLASS_NAMES)
    heatmaps = [axis for axis in figure.axes if axis.get_title()]
    assert [axis.get_title() for axis in heatmaps] == ["model A: fraction of each true class (count)",
                                                       "model B: fraction of each true class (count)"]
    assert heatmaps[0].get_position().y0 > heatmaps[1].get_position().y1  # one above the other
    assert heatmaps[0].get_xlabel() == "Predicted class" and heatmaps[0].get_ylabel() == "True class"
    assert [tick.get_text() for tick in heatmaps[0].get_xticklabels()] == list(CLASS_NAMES)
    cells = [text.get_text().split("\n") for text in heatmaps[0].texts]
    fractions = np.reshape([float(fraction) for fraction, _ in cells], (7, 7))
    counts = np.reshape([int(count.strip("()")) for _, count in cells], (7, 7))
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0, atol=0.02)
    np.testing.assert_array_equal(counts, matrix)
    with pytest.raises(ValueError, match="shape"):
        plots.plot_confusion_matrices({"bad": np.zeros((3, 3))}, CLASS_NAMES)


def test_per_class_f1_bars_for_several_models():
    labels, proba = _predictions()
    table = metrics.per_class_table(labels, proba, CLASS_NAMES)
    figure = plots.plot_per_class_f1({"A": table, "B": table.assign(f1=table["f1"] / 2)})
    (axis,) = figure.axes
    assert axis.get_ylabel() == "F1 score" and axis.get_title() == "Per-class F1"
    assert len(axis.patches) == 14
    heights = [patch.get_height() for patch in axis.patches]
    np.testing.assert_allclose(heights[:7], table["f1"])


def test_misclassified_gallery_shows_the_most_confident_mistakes_with_labels():
    labels, proba = _predictions()
    images = np.random.default_rng(0).integers(0, 255, (len(labels), 48, 48, 1), dtype=np.uint8)
    figure = plots.plot_misclassified(images, labels, proba, CLASS_NAMES, n=5)
    titled = [axis for axis in figure.axes if axis.get_title()]
    assert len(titled) == 5
    wrong = np.flatnonzero(proba.argmax(1) != labels)
    most_confident = wrong[np.argmax(proba[wrong].max(1))]
    assert titled[0].get_title() == (
        f"true: {CLASS_NAMES[labels[most_confident]]}\n"
        f"pred: {CLASS_NAMES[proba[most_confident].argmax()]} ({proba[most_confident].max():.2f})"
    )


def test_misclassified_gallery_without_mistakes_says_so():
    labels = np.array([0, 1])
    figure = plots.plot_misclassified(np.zeros((2, 48, 48, 1)), labels, np.eye(7)[labels], CLASS_NAMES)
    assert figure.axes[0].texts[0].get_text() == "No misclassified images"


def test_reliability_diagram_has_curves_with_ece_in_the_legend():
    labels, proba = _predictions()
    ece = metrics.compute_metrics(labels, proba, n_bins=10)["ece"]
    figure = plots.plot_reliability_diagram({"A": (metrics.reliability_bins(labels, proba, n_bins=10), ece)})
    curve_axis, count_axis = figure.axes
    assert curve_axis.get_title() == "Reliability diagram"
    assert curve_axis.get_ylabel() == "Accuracy"
    assert count_axis.get_xlabel() == "Confidence (top predicted probability)"
    legend = [text.get_text() for text in curve_axis.get_legend().get_texts()]
    assert legend == ["Perfect calibration", f"A (ECE {ece:.3f})"]
    with pytest.raises(ValueError, match="reliability_bins"):
        plots.plot_reliability_diagram({"A": (labels, proba)})  # raw predictions: the caller computes the bins


def test_gradcam_figure_has_faces_and_overlays():
    images = np.zeros((3, 48, 48, 1), np.uint8)
    heatmaps = np.random.default_rng(0).random((3, 48, 48))
    figure = plots.plot_gradcam(images, heatmaps, ["one", "two", "three"])
    assert len(figure.axes) == 6
    assert [axis.get_title() for axis in figure.axes[:3]] == ["one", "two", "three"]
    assert len(figure.axes[3].get_images()) == 2  # face + heatmap overlay
    with pytest.raises(ValueError, match="heatmaps"):
        plots.plot_gradcam(images, heatmaps[:2])


def test_save_figure_writes_a_png(tmp_path):
    figure = plots.plot_training_curves(_history())
    path = plots.save_figure(figure, tmp_path / "figures" / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="png"):
        plots.save_figure(figure, tmp_path / "curves.jpg")
