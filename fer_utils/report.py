"""Comparing trained runs on one split, and writing what was found: tables, text, figures.

- `compare_runs(run_dirs, split, out_dir, settings)` evaluates several run folders (and the average
  of their probabilities) on the same images and writes `summary.md`, `summary.json` and figures;
  `ComparisonSettings` holds its settings, `check_runs` / `expand_run_dirs` find and check the runs
  before any model is loaded.
- Tables of `EvaluationResult`s: `summary_table` (numbers), `formatted_summary` (printable cells),
  `mcnemar_table` (every pair, Holm-adjusted), `protocol_table` / `protocol_headline` (FER2013's
  PrivateTest / PublicTest protocol), `markdown_table`.
- Text: `format_report` (one evaluation, for the CLI), `comparison_conclusion` (a conclusion
  computed from the results, for notebook 05).

The figures are drawn by `fer_utils.plots` from numbers computed here.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from fer_utils import gradcam, plots
from fer_utils.evaluation import EvaluationResult, ensemble_result, evaluate_model, evaluate_proba, split_arrays
from fer_utils.files import atomic_write_json, atomic_write_text, json_number
from fer_utils.metrics import align_class_names, reliability_bins
from fer_utils.stats import holm_adjust, mcnemar_exact


# =============================================================================================
# Comparing runs
# =============================================================================================
@dataclasses.dataclass(frozen=True)
class ComparisonSettings:
    """How `compare_runs` evaluates the runs and what it writes.

    tta: average each face's probabilities with its mirror image's (test-time augmentation).
    n_boot, seed, level: bootstrap resamples (0: no confidence intervals), their seed, the interval's level.
    batch_size: images per prediction batch.
    include_ensemble: add the average of all runs' probabilities as one more model (with two runs or more).
    gradcam_images: test faces in each run's Grad-CAM figure (0: no Grad-CAM).
    write_figures: write the PNG figures (False: summary.md and summary.json only).
    """

    tta: bool = False
    n_boot: int = 1000
    seed: int = 0
    level: float = 0.95
    batch_size: int = 256
    include_ensemble: bool = True
    gradcam_images: int = 7
    write_figures: bool = True


def compare_runs(
    run_dirs: Sequence,
    split,
    out_dir,
    settings: ComparisonSettings = ComparisonSettings(),
) -> tuple[pd.DataFrame, dict[str, EvaluationResult]]:
    """Evaluate several run folders (and the average of their probabilities) on the same split.

    Writes into `out_dir`: `summary.md`, `summary.json` (table, McNemar p-values, per-model
    metrics, settings) and, unless `settings.write_figures` is False, PNG figures: training curves
    per run, validation curves, confusion matrices, per-class F1, reliability diagram, misclassified
    faces per model, and Grad-CAM per run on `settings.gradcam_images` test faces (0: none).
    Returns (summary DataFrame, {name: EvaluationResult}). Models are loaded and evaluated one at
    a time and not kept in memory; a missing run or a class mismatch fails before any evaluation.
    """
    from fer_utils.loading import load_model

    images, labels, data_class_names = split_arrays(split)
    paths = check_runs(run_dirs, data_class_names)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[EvaluationResult] = []
    histories: dict[str, pd.DataFrame] = {}
    figures: dict[str, str] = {}
    notes: list[str] = []
    gradcam_sample = _gradcam_sample(labels, settings.gradcam_images) if settings.write_figures else np.zeros(0, np.int64)
    for path in paths:
        run = load_model(path)
        name = _unique_names([*(result.name for result in results), run.name])[-1]
        result = evaluate_model(
            run, split, tta=settings.tta, batch_size=settings.batch_size, n_boot=settings.n_boot,
            seed=settings.seed, level=settings.level, name=name,
        )
        results.append(result)
        if run.history is not None and len(run.history):
            histories[name] = run.history
        if len(gradcam_sample):
            try:
                figures.update(_gradcam_figure(run.model, result, images, gradcam_sample, out_dir))
            except ValueError as error:
                notes.append(f"Grad-CAM skipped for {name}: {error}")
        del run

    if settings.include_ensemble and len(results) >= 2:
        ensemble_name = _unique_names([*(result.name for result in results), "ensemble"])[-1]
        results.append(ensemble_result(
            results, name=ensemble_name, n_boot=settings.n_boot, seed=settings.seed, level=settings.level
        ))
    summary = summary_table(results)
    mcnemar = mcnemar_table(results)
    if settings.write_figures:
        figures.update(_comparison_figures(results, histories, images, out_dir))

    recorded_settings = {
        "data": str(getattr(split, "source", "")),
        "n": int(len(labels)),
        "class_names": list(data_class_names),
        "tta": settings.tta,
        "n_boot": settings.n_boot,
        "seed": settings.seed,
        "confidence_level": settings.level,
        "runs": [str(path) for path in paths],
    }
    payload = {
        "settings": recorded_settings,
        "summary": [{key: json_number(value) for key, value in row.items()} for row in summary.to_dict(orient="records")],
        "mcnemar": [{key: json_number(value) for key, value in row.items()} for row in mcnemar.to_dict(orient="records")],
        "models": {result.name: result.to_dict() for result in results},
        "figures": figures,
        "notes": notes,
    }
    atomic_write_json(out_dir / "summary.json", payload)
    atomic_write_text(out_dir / "summary.md", _summary_markdown(results, mcnemar, recorded_settings, figures, notes))
    return summary, {result.name: result for result in results}


def check_runs(run_dirs: Sequence, class_names: Sequence[str] | None = None) -> list:
    """Expand and check run paths (or "builtin") without loading any model; return them.

    Raises FileNotFoundError for a path without a model, and (when `class_names` is given)
    ValueError for a run whose class_names.json / config.json names other classes.
    """
    paths = expand_run_dirs(run_dirs)
    if not paths:
        raise ValueError("Give at least one run folder (or .keras file) to compare.")
    for path in paths:
        _check_run_classes(path, class_names)
    return paths


def expand_run_dirs(paths: Sequence) -> list:
    """Run folders from paths that are run folders, .keras files, or folders holding run folders.

    The name "builtin" (the model that ships with the package) stays as it is.
    """
    from fer_utils.pretrained import BUILTIN
    from fer_utils.runs import find_runs, is_run_dir

    expanded: list = []
    for path in paths:
        if str(path) == BUILTIN:
            expanded.append(BUILTIN)
            continue
        path = Path(path)
        if path.is_dir() and not is_run_dir(path) and find_runs(path):
            expanded.extend(find_runs(path))
        else:
            expanded.append(path)
    return expanded


def _check_run_classes(path: Path, data_class_names: Sequence[str] | None) -> None:
    """Raise FileNotFoundError / ValueError for a path that is no run, or a run trained on other classes."""
    from fer_utils import pretrained
    from fer_utils.runs import MODEL_FILE, load_history, read_class_names, read_config, read_val_metrics

    if path == pretrained.BUILTIN:
        names = pretrained.description()["class_names"]
        if data_class_names is not None:
            align_class_names(np.zeros((0, len(names))), names, data_class_names)
        return
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


def _unique_names(names: Iterable[str]) -> list[str]:
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return unique


# =============================================================================================
# Tables
# =============================================================================================
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
        return (f"**Headline: {best} scores {row[level]} accuracy ({level[10:-1]}) on the PrivateTest set** "
                f"({row['images']:,} images here, 3,589 in FER2013): the number comparable to published results.")
    row = rows.loc["whole test folder"]
    return (f"**{best} scores {row[level]} accuracy ({level[10:-1]}) on the whole test folder** ({row['images']:,} images); "
            "its file names do not say PublicTest/PrivateTest, so this is not the split papers report.")


def markdown_table(frame: pd.DataFrame) -> str:
    """Render a DataFrame of already formatted cells as a GitHub-flavoured markdown table."""
    header = "| " + " | ".join(str(column) for column in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(str(cell) for cell in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


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


# =============================================================================================
# Text


# =============================================================================================
# Parameter names of `EvaluationResult.metrics`, in the order the CLI prints them.
HEADLINE_METRICS = (
    ("accuracy", "Accuracy"),
    ("balanced_accuracy", "Balanced accuracy"),
    ("macro_f1", "Macro-F1"),
    ("top2_accuracy", "Top-2 accuracy"),
    ("log_loss", "Log loss"),
    ("ece", "Expected calibration error"),
)


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


# =============================================================================================
# Figures
# =============================================================================================
def _comparison_figures(results: Sequence[EvaluationResult], histories: dict, images: np.ndarray, out_dir: Path) -> dict:
    """Write the comparison figures; return {figure key: file name}."""
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
    # The ECE of compute_metrics and these bins use the same default number of confidence bins.
    calibration = {r.name: (reliability_bins(r.y_true, r.proba), r.metrics["ece"]) for r in results}
    figures["reliability_diagram"] = _save(
        plots.plot_reliability_diagram(calibration),
        out_dir / "reliability_diagram.png",
    )
    for result in results:
        figure = plots.plot_misclassified(
            images, result.y_true, result.proba, class_names, n=16, title=f"Misclassified faces: {result.name}"
        )
        figures[f"misclassified_{result.name}"] = _save(figure, out_dir / f"misclassified_{_slug(result.name)}.png")
    return figures


def _gradcam_figure(model, result: EvaluationResult, images: np.ndarray, sample: np.ndarray, out_dir: Path) -> dict:
    """Write the Grad-CAM figure of one model on the sample faces; return {figure key: file name}."""
    heatmaps = gradcam.gradcam_heatmaps(model, images[sample])
    names = result.class_names
    titles = [f"true: {names[result.y_true[index]]}\npred: {names[result.y_pred[index]]}" for index in sample]
    figure = plots.plot_gradcam(images[sample], heatmaps, titles, title=f"Grad-CAM: {result.name}")
    return {f"gradcam_{result.name}": _save(figure, out_dir / f"gradcam_{_slug(result.name)}.png")}


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
    plots.save_figure(figure, path)
    return path.name
