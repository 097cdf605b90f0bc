"""Matplotlib figures for training and evaluation.

Every function returns a `matplotlib.figure.Figure` and draws nothing on screen by itself (in a
notebook the returned figure is displayed; in scripts pass it to `save_figure`). Figures are made
with the object-oriented API (`Figure` objects, not the global `pyplot` state), so they are safe in
headless runs and need no closing. The plots compute nothing: the numbers they draw come from
`fer_utils.metrics`, `fer_utils.evaluation` and `fer_utils.gradcam`, and this module imports none of them.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

TRAIN_COLOR = "tab:blue"
VALIDATION_COLOR = "tab:orange"


def _new_figure(width: float, height: float):
    """A stand-alone figure (not registered with pyplot, so nothing leaks) with a constrained layout.

    Jupyter displays a returned Figure like any other value; scripts save it with `save_figure`.
    """
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save_figure(figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save `figure` as a PNG at `path` (atomically: a complete file or none) and return the path."""
    from fer_utils.files import atomic_write_bytes

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"save_figure writes PNG files; give a path ending in .png, not '{path}'.")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return atomic_write_bytes(path, buffer.getvalue())


# =============================================================================================
# Training curves
# =============================================================================================
def _epoch_axis(history: pd.DataFrame) -> np.ndarray:
    """The x values: the `epoch` column when it increases throughout, else 1, 2, 3, ... per row.

    A history whose epoch numbers restart in each phase is drawn end to end.
    """
    if "epoch" in history and len(history) and np.all(np.diff(history["epoch"].to_numpy()) > 0):
        return history["epoch"].to_numpy()
    return np.arange(1, len(history) + 1)


def _phase_boundaries(history: pd.DataFrame, epochs: np.ndarray) -> list[tuple[float, str]]:
    """(x position, name of the new phase) for every change of the `phase` column."""
    if "phase" not in history or len(history) < 2:
        return []
    phases = history["phase"].astype(str).to_numpy()
    boundaries = []
    for index in np.flatnonzero(phases[1:] != phases[:-1]) + 1:
        boundaries.append(((epochs[index - 1] + epochs[index]) / 2.0, phases[index]))
    return boundaries


def _check_history(history, name: str = "history") -> pd.DataFrame:
    if not isinstance(history, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame (a run's history.csv); got {type(history).__name__}.")
    return history


def plot_training_curves(history: pd.DataFrame, title: str | None = None):
    """Accuracy and loss per epoch, training vs validation, with phase changes marked.

    `history` has columns epoch, phase, loss, accuracy, val_loss, val_accuracy (missing columns
    are skipped). A dashed vertical line marks each change of phase (e.g. head -> fine-tune).
    """
    history = _check_history(history)
    figure = _new_figure(11, 4)
    axes = figure.subplots(1, 2)
    epochs = _epoch_axis(history)
    boundaries = _phase_boundaries(history, epochs)
    for axis, metric, label in ((axes[0], "accuracy", "Accuracy"), (axes[1], "loss", "Loss")):
        if metric in history:
            axis.plot(epochs, history[metric], marker="o", markersize=3, color=TRAIN_COLOR, label="Training")
        if f"val_{metric}" in history:
            axis.plot(epochs, history[f"val_{metric}"], marker="o", markersize=3, color=VALIDATION_COLOR, label="Validation")
        for position, phase in boundaries:
            axis.axvline(position, color="gray", linestyle="--", linewidth=1)
            axis.annotate(
                f"phase: {phase}", (position, 1.0), xycoords=("data", "axes fraction"),
                xytext=(3, -12), textcoords="offset points", fontsize=8, color="dimgray",
            )
        _style_epoch_axis(axis, f"{label} per epoch", label)
    if title:
        figure.suptitle(title)
    return figure


def _style_epoch_axis(axis, title: str, ylabel: str) -> None:
    """Title, integer epoch ticks, labels, grid and (when there are labelled lines) a legend."""
    from matplotlib.ticker import MaxNLocator

    axis.set_title(title)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("Epoch")
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    if axis.get_legend_handles_labels()[0]:
        axis.legend()


def plot_validation_curves(histories: Mapping[str, pd.DataFrame], title: str | None = "Validation curves"):
    """Validation accuracy and loss of several runs on one figure ({run name: history})."""
    if not histories:
        raise ValueError("plot_validation_curves needs at least one {name: history} entry.")
    figure = _new_figure(11, 4)
    axes = figure.subplots(1, 2)
    for name, history in histories.items():
        history = _check_history(history, f"history of '{name}'")
        epochs = _epoch_axis(history)
        for axis, metric in ((axes[0], "val_accuracy"), (axes[1], "val_loss")):
            if metric in history:
                line = axis.plot(epochs, history[metric], marker="o", markersize=3, label=name)[0]
                for position, _ in _phase_boundaries(history, epochs):
                    axis.axvline(position, color=line.get_color(), linestyle=":", linewidth=1)
    for axis, label in ((axes[0], "Validation accuracy"), (axes[1], "Validation loss")):
        _style_epoch_axis(axis, label, label)
    if title:
        figure.suptitle(title)
    return figure


# =============================================================================================
# Confusion matrices, per-class scores, calibration
# =============================================================================================
def plot_confusion_matrices(
    matrices: Mapping[str, np.ndarray], class_names: Sequence[str], normalize: bool = True, title: str | None = None
):
    """Confusion-matrix heatmaps side by side ({model name: (K, K) counts, rows true, columns predicted}).

    With `normalize=True` each row is shown as fractions of its true class (the diagonal is the
    per-class recall), which makes models and imbalanced classes comparable.
    """
    import seaborn as sns

    if not matrices:
        raise ValueError("plot_confusion_matrices needs at least one {name: matrix} entry.")
    class_names = list(class_names)
    count = len(matrices)
    figure = _new_figure(4.6 * count + 0.8, 4.4)
    axes = np.atleast_1d(figure.subplots(1, count))
    for axis, (name, matrix) in zip(axes, matrices.items()):
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.shape != (len(class_names), len(class_names)):
            raise ValueError(
                f"The confusion matrix of '{name}' has shape {matrix.shape}; expected "
                f"({len(class_names)}, {len(class_names)}) for classes {class_names}."
            )
        if normalize:
            totals = matrix.sum(axis=1, keepdims=True)
            matrix = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
        sns.heatmap(
            matrix, ax=axis, annot=True, fmt=".2f" if normalize else ".0f", cmap="Blues", cbar=False,
            vmin=0.0, vmax=1.0 if normalize else None, xticklabels=class_names, yticklabels=class_names,
            square=True, annot_kws={"fontsize": 7},
        )
        axis.set_title(str(name))
        axis.set_xlabel("Predicted class")
        axis.set_ylabel("True class")
        axis.tick_params(axis="x", labelrotation=45)
        axis.tick_params(axis="y", labelrotation=0)
    figure.suptitle(title or ("Confusion matrices (each row divided by its count)" if normalize else "Confusion matrices (counts)"))
    return figure


def plot_per_class_f1(per_class: Mapping[str, pd.DataFrame], title: str | None = "Per-class F1"):
    """Grouped bars of per-class F1 for several models ({name: per_class_table DataFrame})."""
    if not per_class:
        raise ValueError("plot_per_class_f1 needs at least one {name: per-class table} entry.")
    tables = list(per_class.items())
    class_names = list(tables[0][1].index)
    figure = _new_figure(max(7.0, 1.3 * len(class_names) + 0.4 * len(tables)), 4)
    axis = figure.subplots()
    width = 0.8 / len(tables)
    positions = np.arange(len(class_names))
    for offset, (name, table) in enumerate(tables):
        if "f1" not in table:
            raise ValueError(f"The per-class table of '{name}' has no 'f1' column; use metrics.per_class_table.")
        scores = table["f1"].reindex(class_names).to_numpy(dtype=np.float64)
        axis.bar(positions + (offset - (len(tables) - 1) / 2) * width, scores, width=width, label=str(name))
    axis.set_xticks(positions, class_names)
    axis.set_xlabel("Class")
    axis.set_ylabel("F1 score")
    axis.set_ylim(0.0, 1.0)
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8)
    if title:
        axis.set_title(title)
    return figure


def plot_reliability_diagram(
    calibration: Mapping[str, tuple[pd.DataFrame, float]], title: str | None = "Reliability diagram"
):
    """Accuracy against confidence per confidence bin for several models ({name: (bins, ece)}).

    `bins` is the model's `fer_utils.metrics.reliability_bins` table (columns lower, upper, count,
    confidence, accuracy) and `ece` its expected calibration error (`metrics.expected_calibration_error`
    with the same bins). A perfectly calibrated model lies on the diagonal. The legend gives each
    model's ECE; the lower panel shows how many images fall in each confidence bin.
    """
    if not calibration:
        raise ValueError("plot_reliability_diagram needs at least one {name: (bins, ece)} entry.")
    figure = _new_figure(6, 6.5)
    curve_axis, count_axis = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    curve_axis.plot([0, 1], [0, 1], linestyle="--", color="gray", label="Perfect calibration")
    for name, (bins, ece) in calibration.items():
        missing = {"lower", "upper", "count", "confidence", "accuracy"} - set(getattr(bins, "columns", ()))
        if missing:
            raise ValueError(
                f"The reliability bins of '{name}' lack the columns {sorted(missing)}; "
                "pass the table of fer_utils.metrics.reliability_bins(y_true, proba)."
            )
        filled = bins[bins["count"] > 0]
        line = curve_axis.plot(filled["confidence"], filled["accuracy"], marker="o", label=f"{name} (ECE {ece:.3f})")[0]
        centers = (bins["lower"] + bins["upper"]) / 2
        count_axis.plot(centers, bins["count"], marker=".", color=line.get_color())
    curve_axis.set_xlim(0.0, 1.0)
    curve_axis.set_ylim(0.0, 1.0)
    curve_axis.set_ylabel("Accuracy")
    curve_axis.grid(alpha=0.3)
    curve_axis.legend(fontsize=8, loc="upper left")
    if title:
        curve_axis.set_title(title)
    count_axis.set_xlabel("Confidence (top predicted probability)")
    count_axis.set_ylabel("Images")
    count_axis.grid(alpha=0.3)
    return figure


# =============================================================================================
# Faces
# =============================================================================================
def _face(image) -> np.ndarray:
    """A face as a 2-D (grayscale) or 3-D RGB array for imshow."""
    image = np.asarray(image)
    return image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image


def _grid(count: int, columns: int) -> tuple[int, int]:
    columns = max(1, min(columns, count))
    return int(np.ceil(count / columns)), columns


def plot_misclassified(
    images, y_true, proba, class_names: Sequence[str], n: int = 16, columns: int = 8, title: str | None = None
):
    """A gallery of the `n` most confidently misclassified faces, with true and predicted labels.

    Each face is titled "true: X / pred: Y (confidence)". Showing the most confident mistakes
    first points at label noise and at the class pairs the model confuses most.
    """
    images = np.asarray(images)
    y_true = np.asarray(y_true)
    proba = np.asarray(proba)
    if not len(images) == len(y_true) == len(proba):
        raise ValueError(f"images, y_true and proba must have the same length; got {len(images)}, {len(y_true)}, {len(proba)}.")
    predicted = proba.argmax(axis=1)
    confidence = proba.max(axis=1)
    wrong = np.flatnonzero(predicted != y_true)
    chosen = wrong[np.argsort(-confidence[wrong], kind="stable")][:n]
    title = title or "Misclassified faces (most confident first)"
    if len(chosen) == 0:
        figure = _new_figure(4, 1.5)
        axis = figure.subplots()
        axis.axis("off")
        axis.text(0.5, 0.5, "No misclassified images", ha="center", va="center")
        axis.set_title(title)
        return figure
    rows, columns = _grid(len(chosen), columns)
    figure = _new_figure(1.6 * columns, 1.9 * rows + 0.4)
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for axis in axes:
        axis.axis("off")
    for axis, index in zip(axes, chosen):
        axis.imshow(_face(images[index]), cmap="gray", vmin=0, vmax=255)
        axis.set_title(
            f"true: {class_names[y_true[index]]}\npred: {class_names[predicted[index]]} ({confidence[index]:.2f})",
            fontsize=8,
        )
    figure.suptitle(title)
    return figure


def plot_gradcam(images, heatmaps, titles: Sequence[str] | None = None, alpha: float = 0.45, title: str | None = "Grad-CAM"):
    """Each face (top row) and its Grad-CAM heatmap drawn over it (bottom row).

    `heatmaps` is (N, H, W) in [0, 1], as returned by `gradcam.gradcam_heatmaps`.
    """
    images = np.asarray(images)
    heatmaps = np.asarray(heatmaps)
    if len(images) != len(heatmaps) or len(images) == 0:
        raise ValueError(f"plot_gradcam needs as many heatmaps as images (at least one); got {len(images)} and {len(heatmaps)}.")
    if heatmaps.shape[1:3] != images.shape[1:3]:
        raise ValueError(f"Heatmaps of shape {heatmaps.shape[1:3]} do not match images of shape {images.shape[1:3]}.")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"Give one title per image ({len(images)}); got {len(titles)}.")
    count = len(images)
    figure = _new_figure(1.8 * count + 0.2, 4.2)
    axes = np.asarray(figure.subplots(2, count, squeeze=False))
    for column in range(count):
        face = _face(images[column])
        axes[0, column].imshow(face, cmap="gray", vmin=0, vmax=255)
        axes[1, column].imshow(face, cmap="gray", vmin=0, vmax=255)
        axes[1, column].imshow(heatmaps[column], cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
        if titles is not None:
            axes[0, column].set_title(titles[column], fontsize=8)
        for axis in axes[:, column]:
            axis.set_xticks([])
            axis.set_yticks([])
    axes[0, 0].set_ylabel("Face")
    axes[1, 0].set_ylabel("Grad-CAM")
    if title:
        figure.suptitle(title)
    return figure


# =============================================================================================
# Data exploration and augmentation (notebooks 01 and 02)
# =============================================================================================
def plot_class_counts(summary: pd.DataFrame, title: str = "Images per class"):
    """Grouped bars of images per class and split, from `fer_utils.data.dataset_summary`."""
    table = summary.drop(index="total", errors="ignore").drop(columns="total", errors="ignore")
    figure = _new_figure(max(6.0, 1.1 * len(table)), 4.0)
    axes = figure.subplots()
    width = 0.8 / max(1, len(table.columns))
    positions = np.arange(len(table))
    for offset, split_name in enumerate(table.columns):
        bars = axes.bar(positions + offset * width, table[split_name], width, label=split_name)
        axes.bar_label(bars, fontsize=7)
    axes.set_xticks(positions + width * (len(table.columns) - 1) / 2, table.index)
    axes.set_xlabel("Class")
    axes.set_ylabel("Images")
    axes.set_title(title)
    axes.legend(title="Split")
    return figure


def plot_sample_grid(split, per_class: int = 8, seed: int = 0, title: str = "Sample faces per class"):
    """A grid of random faces: one row per class, `per_class` columns."""
    rng = np.random.default_rng(seed)
    names = split.class_names
    figure = _new_figure(1.1 * per_class, 1.2 * len(names))
    grid = figure.subplots(len(names), per_class, squeeze=False)
    for row, name in enumerate(names):
        members = np.flatnonzero(split.labels == row)
        chosen = rng.choice(members, size=min(per_class, len(members)), replace=False) if len(members) else []
        for column in range(per_class):
            axes = grid[row, column]
            axes.set_xticks([])
            axes.set_yticks([])
            if column < len(chosen):
                axes.imshow(split.images[chosen[column], :, :, 0], cmap="gray", vmin=0, vmax=255)
            else:
                axes.set_axis_off()
            if column == 0:
                axes.set_ylabel(name, rotation=0, ha="right", va="center")
    figure.suptitle(title)
    return figure


def plot_pixel_histograms(split, title: str = "Pixel intensity per class"):
    """Per-class histograms of pixel values (density), and the per-image mean brightness as box plots."""
    names = split.class_names
    figure = _new_figure(12.0, 4.0)
    histogram_axes, box_axes = figure.subplots(1, 2)
    bins = np.arange(0, 257, 8)
    means = []
    for label, name in enumerate(names):
        images = split.images[split.labels == label]
        means.append(images.reshape(len(images), -1).mean(axis=1) if len(images) else np.array([]))
        if len(images):
            histogram_axes.hist(images.ravel(), bins=bins, density=True, histtype="step", label=name)
    histogram_axes.set_xlabel("Pixel value")
    histogram_axes.set_ylabel("Density")
    histogram_axes.set_title("Pixel value distribution")
    histogram_axes.legend(fontsize=8)
    box_axes.boxplot(means, showfliers=False)
    box_axes.set_xticks(np.arange(1, len(names) + 1), names, rotation=30)
    box_axes.set_ylabel("Mean pixel value per image")
    box_axes.set_title("Image brightness")
    figure.suptitle(title)
    return figure


def plot_image_rows(rows: Mapping[str, np.ndarray], title: str | None = None, cmap: str = "gray",
                    value_range: tuple[float, float] | None = (0, 255)):
    """One row of images per entry of `rows` (label -> array (K, H, W) or (K, H, W, C))."""
    labels = list(rows)
    columns = max(len(images) for images in rows.values())
    figure = _new_figure(1.3 * columns + 1.0, 1.4 * len(labels))
    grid = figure.subplots(len(labels), columns, squeeze=False)
    for row, label in enumerate(labels):
        for column in range(columns):
            axes = grid[row, column]
            axes.set_xticks([])
            axes.set_yticks([])
            if column >= len(rows[label]):
                axes.set_axis_off()
                continue
            image = np.asarray(rows[label][column], dtype=np.float32)
            if image.ndim == 3 and image.shape[-1] == 1:
                image = image[..., 0]
            vmin, vmax = value_range if value_range else (image.min(), image.max())
            if image.ndim == 3:
                image = np.clip((image - vmin) / max(vmax - vmin, 1e-6), 0, 1)
                axes.imshow(image)
            else:
                axes.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax)
            if column == 0:
                axes.set_ylabel(label, rotation=0, ha="right", va="center")
    if title:
        figure.suptitle(title)
    return figure


def plot_face_predictions(image: np.ndarray, crops: np.ndarray, predictions, class_names: Sequence[str],
                          title: str = "Faces found and their predicted expression"):
    """The annotated photo, then for each face its 48x48 model input and the class probabilities.

    Args:
        image: the annotated RGB photo (see `fer_utils.faces.annotate`).
        crops: the faces as the model saw them, (K, 48, 48, 1).
        predictions: `fer_utils.faces.FacePrediction` objects, one per crop.
        class_names: the model's class order.
    """
    faces = len(predictions)
    figure = _new_figure(4.5 + 4.0 * min(faces, 3), 4.0 if faces <= 3 else 4.0 + 2.2 * ((faces - 1) // 3))
    rows = max(1, (faces + 2) // 3)
    grid = figure.add_gridspec(rows, 1 + 2 * min(max(faces, 1), 3), width_ratios=[3] + [1, 1.6] * min(max(faces, 1), 3))
    photo_axes = figure.add_subplot(grid[:, 0])
    photo_axes.imshow(image)
    photo_axes.set_axis_off()
    photo_axes.set_title(f"{faces} face(s) found")
    for index, prediction in enumerate(predictions):
        row, column = divmod(index, 3)
        crop_axes = figure.add_subplot(grid[row, 1 + 2 * column])
        crop_axes.imshow(crops[index, :, :, 0], cmap="gray", vmin=0, vmax=255)
        crop_axes.set_axis_off()
        crop_axes.set_title(f"face {index + 1}", fontsize=9)
        bar_axes = figure.add_subplot(grid[row, 2 + 2 * column])
        positions = np.arange(len(class_names))
        bar_axes.barh(positions, prediction.probabilities, color=TRAIN_COLOR)
        bar_axes.set_yticks(positions, class_names, fontsize=8)
        bar_axes.invert_yaxis()
        bar_axes.set_xlim(0, 1)
        bar_axes.set_xlabel("Probability", fontsize=8)
        bar_axes.set_title(f"{prediction.label} ({prediction.confidence:.0%})", fontsize=9)
    figure.suptitle(title)
    return figure
