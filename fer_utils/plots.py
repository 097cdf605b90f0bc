"""Matplotlib figures for the notebooks and the comparison report.

Every function returns a stand-alone `matplotlib.figure.Figure` (not pyplot's global state, so
headless runs leak nothing); a notebook displays it, scripts pass it to `save_figure`.
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


def _style_epoch_axis(axis, title: str, ylabel: str) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_title(title)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("Epoch")
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
    if axis.get_legend_handles_labels()[0]:
        axis.legend()


def _phase_figure(lines, title: str | None):
    """Accuracy (top) and loss (bottom) per epoch, one column per training phase with its own epoch axis, so a
    short fine-tuning phase gets room of its own. `lines`: (label, history, "" or "val_", color) per curve."""
    def phase_of(history):
        return history["phase"].astype(str) if "phase" in history else pd.Series("", index=history.index)

    phases = list(dict.fromkeys(phase for _, history, _, _ in lines for phase in phase_of(history)))
    lengths = [max(int((phase_of(history) == phase).sum()) for _, history, _, _ in lines) for phase in phases]
    widths = [max(length, 0.3 * sum(lengths), 1) for length in lengths]  # a 1-epoch phase stays visible
    figure = _new_figure(11, 6.5)
    axes = figure.subplots(2, len(phases), squeeze=False, sharey="row", gridspec_kw={"width_ratios": widths})
    for column, phase in enumerate(phases):
        for row, (metric, label) in enumerate((("accuracy", "Accuracy"), ("loss", "Loss"))):
            axis = axes[row, column]
            for line_label, history, prefix, color in lines:
                rows = history[phase_of(history) == phase]
                if prefix + metric in rows and len(rows):
                    axis.plot(np.arange(1, len(rows) + 1), rows[prefix + metric], marker="o", markersize=4,
                              color=color, label=line_label)
            heading = f"phase {column + 1}: {phase}, {label.lower()}" if phase else f"{label} per epoch"
            _style_epoch_axis(axis, heading, label if column == 0 else "")
            if (column or row) and axis.get_legend():
                axis.get_legend().remove()  # one legend, in the first panel
            if lengths[column] == 1:
                axis.set_xlim(0.5, 1.5)
                axis.set_xticks([1])
    if title:
        figure.suptitle(title)
    return figure


def plot_training_curves(history: pd.DataFrame, title: str | None = None):
    """Training and validation accuracy and loss per epoch of a run's history.csv (missing columns skipped),
    each phase in its own panels."""
    return _phase_figure([("Training", history, "", TRAIN_COLOR), ("Validation", history, "val_", VALIDATION_COLOR)],
                         title)


def plot_validation_curves(histories: Mapping[str, pd.DataFrame], title: str = "Validation curves"):
    """Validation accuracy and loss of several runs ({run name: history}), each phase in its own panels."""
    if not histories:
        raise ValueError("plot_validation_curves needs at least one {name: history} entry.")
    return _phase_figure([(name, history, "val_", None) for name, history in histories.items()], title)


def plot_confusion_matrices(matrices: Mapping[str, np.ndarray], class_names: Sequence[str]):
    """One confusion-matrix heatmap per row ({model name: (K, K) counts}): each row as a fraction of its true
    class (the diagonal is per-class recall, so imbalanced classes compare), the count beneath it."""
    import seaborn as sns

    if not matrices:
        raise ValueError("plot_confusion_matrices needs at least one {name: matrix} entry.")
    class_names = list(class_names)
    figure = _new_figure(7.5, 6.2 * len(matrices))
    axes = np.atleast_1d(figure.subplots(len(matrices), 1))
    for axis, (name, matrix) in zip(axes, matrices.items()):
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.shape != (len(class_names),) * 2:
            raise ValueError(f"The confusion matrix of '{name}' has shape {matrix.shape}; expected "
                             f"({len(class_names)}, {len(class_names)}) for classes {class_names}.")
        totals = matrix.sum(axis=1, keepdims=True)
        fractions = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
        cells = [[f"{fraction:.2f}\n({count:.0f})" for fraction, count in zip(*pair)] for pair in zip(fractions, matrix)]
        sns.heatmap(fractions, ax=axis, annot=np.array(cells), fmt="", cmap="Blues", vmin=0.0, vmax=1.0, square=True,
                    xticklabels=class_names, yticklabels=class_names, annot_kws={"fontsize": 10},
                    cbar_kws={"label": "fraction of the true class", "shrink": 0.8})
        axis.set_title(f"{name}: fraction of each true class (count)")
        axis.set_xlabel("Predicted class")
        axis.set_ylabel("True class")
        axis.tick_params(axis="x", labelrotation=45)
        axis.tick_params(axis="y", labelrotation=0)
    return figure


def plot_per_class_f1(per_class: Mapping[str, pd.DataFrame]):
    """Grouped bars of per-class F1 for several models ({name: `metrics.per_class_table`})."""
    if not per_class:
        raise ValueError("plot_per_class_f1 needs at least one {name: per-class table} entry.")
    tables = list(per_class.items())
    class_names = list(tables[0][1].index)
    figure = _new_figure(max(7.0, 1.3 * len(class_names) + 0.4 * len(tables)), 4)
    axis = figure.subplots()
    width, positions = 0.8 / len(tables), np.arange(len(class_names))
    for offset, (name, table) in enumerate(tables):
        scores = table["f1"].reindex(class_names).to_numpy(dtype=np.float64)
        axis.bar(positions + (offset - (len(tables) - 1) / 2) * width, scores, width=width, label=str(name))
    axis.set_xticks(positions, class_names)
    axis.set(xlabel="Class", ylabel="F1 score", ylim=(0.0, 1.0), title="Per-class F1")
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8)
    return figure


def plot_reliability_diagram(calibration: Mapping[str, tuple[pd.DataFrame, float]]):
    """Accuracy against confidence per bin for several models ({name: (`metrics.reliability_bins`, ece)}),
    the diagonal perfect; the lower panel shows how many images fall in each bin."""
    if not calibration:
        raise ValueError("plot_reliability_diagram needs at least one {name: (bins, ece)} entry.")
    figure = _new_figure(6, 6.5)
    curve_axis, count_axis = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    curve_axis.plot([0, 1], [0, 1], linestyle="--", color="gray", label="Perfect calibration")
    for name, (bins, ece) in calibration.items():
        missing = {"lower", "upper", "count", "confidence", "accuracy"} - set(getattr(bins, "columns", ()))
        if missing:
            raise ValueError(f"The reliability bins of '{name}' lack the columns {sorted(missing)}; "
                             "pass the table of fer_utils.metrics.reliability_bins(y_true, proba).")
        filled = bins[bins["count"] > 0]
        line = curve_axis.plot(filled["confidence"], filled["accuracy"], marker="o", label=f"{name} (ECE {ece:.3f})")[0]
        count_axis.plot((bins["lower"] + bins["upper"]) / 2, bins["count"], marker=".", color=line.get_color())
    curve_axis.set(xlim=(0.0, 1.0), ylim=(0.0, 1.0), ylabel="Accuracy", title="Reliability diagram")
    curve_axis.grid(alpha=0.3)
    curve_axis.legend(fontsize=8, loc="upper left")
    count_axis.set(xlabel="Confidence (top predicted probability)", ylabel="Images")
    count_axis.grid(alpha=0.3)
    return figure


def _face(image) -> np.ndarray:
    """A face as a 2-D (grayscale) or 3-D RGB array for imshow."""
    image = np.asarray(image)
    return image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image


def plot_misclassified(images, y_true, proba, class_names: Sequence[str], n: int = 16, title: str | None = None):
    """The `n` most confidently misclassified faces, "true: X / pred: Y (confidence)": they show label noise
    and the class pairs the model confuses most."""
    images, y_true, proba = np.asarray(images), np.asarray(y_true), np.asarray(proba)
    if not len(images) == len(y_true) == len(proba):
        raise ValueError(f"images, y_true and proba must have the same length; got {len(images)}, {len(y_true)}, {len(proba)}.")
    predicted, confidence = proba.argmax(axis=1), proba.max(axis=1)
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
    columns = min(6, len(chosen))
    rows = int(np.ceil(len(chosen) / columns))
    figure = _new_figure(1.8 * columns, 2.1 * rows + 0.4)
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for axis in axes:
        axis.axis("off")
    for axis, index in zip(axes, chosen):
        axis.imshow(_face(images[index]), cmap="gray", vmin=0, vmax=255)
        axis.set_title(f"true: {class_names[y_true[index]]}\npred: {class_names[predicted[index]]} "
                       f"({confidence[index]:.2f})", fontsize=10)
    figure.suptitle(title)
    return figure


def plot_gradcam(images, heatmaps, titles: Sequence[str] | None = None, title: str | None = "Grad-CAM"):
    """Each face (top row) and its Grad-CAM heatmap ((N, H, W) in [0, 1]) drawn over it (bottom row)."""
    images, heatmaps = np.asarray(images), np.asarray(heatmaps)
    if len(images) != len(heatmaps) or len(images) == 0:
        raise ValueError(f"plot_gradcam needs as many heatmaps as images (at least one); got {len(images)} and {len(heatmaps)}.")
    if heatmaps.shape[1:3] != images.shape[1:3]:
        raise ValueError(f"Heatmaps of shape {heatmaps.shape[1:3]} do not match images of shape {images.shape[1:3]}.")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"Give one title per image ({len(images)}); got {len(titles)}.")
    figure = _new_figure(1.8 * len(images) + 0.2, 4.2)
    axes = np.asarray(figure.subplots(2, len(images), squeeze=False))
    for column, image in enumerate(images):
        for axis in axes[:, column]:
            axis.imshow(_face(image), cmap="gray", vmin=0, vmax=255)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[1, column].imshow(heatmaps[column], cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
        if titles is not None:
            axes[0, column].set_title(titles[column], fontsize=10)
    axes[0, 0].set_ylabel("Face")
    axes[1, 0].set_ylabel("Grad-CAM")
    if title:
        figure.suptitle(title)
    return figure


def plot_class_counts(summary: pd.DataFrame, title: str = "Images per class"):
    """Grouped bars of images per class and split, from `fer_utils.data.dataset_summary`."""
    table = summary.drop(index="total", errors="ignore").drop(columns="total", errors="ignore")
    figure = _new_figure(max(6.0, 1.1 * len(table)), 4.0)
    axes = figure.subplots()
    width, positions = 0.8 / max(1, len(table.columns)), np.arange(len(table))
    for offset, split_name in enumerate(table.columns):
        axes.bar_label(axes.bar(positions + offset * width, table[split_name], width, label=split_name), fontsize=7)
    axes.set_xticks(positions + width * (len(table.columns) - 1) / 2, table.index)
    axes.set(xlabel="Class", ylabel="Images", title=title)
    axes.legend(title="Split")
    return figure


def plot_sample_grid(split, per_class: int = 8, seed: int = 0, title: str = "Sample faces per class"):
    """A grid of random faces: one row per class, `per_class` columns."""
    rng = np.random.default_rng(seed)
    rows = {}
    for label, name in enumerate(split.class_names):
        members = np.flatnonzero(split.labels == label)
        rows[name] = split.images[rng.choice(members, size=min(per_class, len(members)), replace=False)]
    return plot_image_rows(rows, title=title, columns=per_class)


def plot_pixel_histograms(split, title: str = "Pixel intensity per class"):
    """Per-class histograms of pixel values (density), and the per-image mean brightness as box plots."""
    figure = _new_figure(12.0, 4.0)
    histogram_axes, box_axes = figure.subplots(1, 2)
    means = []
    for label, name in enumerate(split.class_names):
        images = split.images[split.labels == label]
        means.append(images.reshape(len(images), -1).mean(axis=1) if len(images) else np.array([]))
        if len(images):
            histogram_axes.hist(images.ravel(), bins=np.arange(0, 257, 8), density=True, histtype="step", label=name)
    histogram_axes.set(xlabel="Pixel value", ylabel="Density", title="Pixel value distribution")
    histogram_axes.legend(fontsize=8)
    box_axes.boxplot(means, showfliers=False)
    box_axes.set_xticks(np.arange(1, len(split.class_names) + 1), split.class_names, rotation=30)
    box_axes.set(ylabel="Mean pixel value per image", title="Image brightness")
    figure.suptitle(title)
    return figure


def plot_image_rows(rows: Mapping[str, np.ndarray], title: str | None = None,
                    value_range: tuple[float, float] | None = (0, 255), columns: int | None = None,
                    cell_inches: float = 1.3):
    """One row of images per entry of `rows` (label -> (K, H, W) or (K, H, W, C)), each `cell_inches` wide;
    `value_range` None scales each image to its own range."""
    labels = list(rows)
    columns = columns or max(len(images) for images in rows.values())
    first = np.asarray(next(iter(rows.values()))[0])
    row_inches = cell_inches * first.shape[0] / first.shape[1] + 0.1  # rows as tall as the images' aspect needs
    figure = _new_figure(cell_inches * columns + 1.0, row_inches * len(labels))
    grid = figure.subplots(len(labels), columns, squeeze=False)
    for row, label in enumerate(labels):
        grid[row, 0].set_ylabel(label, rotation=0, ha="right", va="center")
        for column, axes in enumerate(grid[row]):
            axes.set_xticks([])
            axes.set_yticks([])
            if column >= len(rows[label]):
                axes.set_axis_off()
                continue
            image = _face(np.asarray(rows[label][column], dtype=np.float32))
            vmin, vmax = value_range if value_range else (image.min(), image.max())
            if image.ndim == 3:
                axes.imshow(np.clip((image - vmin) / max(vmax - vmin, 1e-6), 0, 1))
            else:
                axes.imshow(image, cmap="gray", vmin=vmin, vmax=vmax)
    if title:
        figure.suptitle(title)
    return figure


def plot_face_predictions(image: np.ndarray, crops: np.ndarray, predictions, class_names: Sequence[str],
                          title: str = "Faces found and their predicted expression"):
    """The annotated photo (`faces.annotate`), then each face's 48x48 crop (`crops`, the model's inputs) and
    its `faces.FacePrediction` probabilities."""
    faces = len(predictions)
    per_row = min(max(faces, 1), 3)
    figure = _new_figure(4.5 + 4.0 * min(faces, 3), 4.0 if faces <= 3 else 4.0 + 2.2 * ((faces - 1) // 3))
    grid = figure.add_gridspec(max(1, (faces + 2) // 3), 1 + 2 * per_row, width_ratios=[3] + [1, 1.6] * per_row)
    photo_axes = figure.add_subplot(grid[:, 0])
    photo_axes.imshow(image)
    photo_axes.set_axis_off()
    photo_axes.set_title(f"{faces} face(s) found")
    positions = np.arange(len(class_names))
    for index, prediction in enumerate(predictions):
        row, column = divmod(index, 3)
        crop_axes = figure.add_subplot(grid[row, 1 + 2 * column])
        crop_axes.imshow(crops[index, :, :, 0], cmap="gray", vmin=0, vmax=255)
        crop_axes.set_axis_off()
        crop_axes.set_title(f"face {index + 1}", fontsize=9)
        bar_axes = figure.add_subplot(grid[row, 2 + 2 * column])
        bar_axes.barh(positions, prediction.probabilities, color=TRAIN_COLOR)
        bar_axes.set_yticks(positions, class_names, fontsize=8)
        bar_axes.invert_yaxis()
        bar_axes.set_xlim(0, 1)
        bar_axes.set_xlabel("Probability", fontsize=8)
        bar_axes.set_title(f"{prediction.label} ({prediction.confidence:.0%})", fontsize=9)
    figure.suptitle(title)
    return figure
