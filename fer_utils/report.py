"""Comparing trained runs on one split (`compare_runs`), and the tables, texts and figures that say
what was found, for the command line and notebook 05.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from fer_utils import gradcam, plots, pretrained, runs
from fer_utils.evaluation import EvaluationResult, ensemble_result, evaluate_model, evaluate_proba
from fer_utils.files import atomic_write_json, atomic_write_text, json_number, record_output
from fer_utils.metrics import align_class_names, reliability_bins
from fer_utils.stats import holm_adjust, mcnemar_exact


@dataclasses.dataclass(frozen=True)
class ComparisonSettings:
    """How `compare_runs` evaluates and what it writes. tta: average with the mirror image. n_boot, seed:
    bootstrap resamples for the 95% intervals (0: none). include_ensemble: add the runs' average (two or
    more). gradcam_images: faces per Grad-CAM figure (0: none). write_figures: False writes the summaries only."""

    tta: bool = False
    n_boot: int = 1000
    seed: int = 0
    batch_size: int = 256
    include_ensemble: bool = True
    gradcam_images: int = 7
    write_figures: bool = True


def compare_runs(run_dirs: Sequence, split, out_dir, settings: ComparisonSettings = ComparisonSettings()):
    """Evaluate several runs (and the average of their probabilities) on the same split, loading one model at
    a time; a missing run or a class mismatch fails before any evaluation. Writes `summary.md`, `summary.json`
    and PNG figures into `out_dir`, each listed in its manifest. Returns (summary DataFrame, {name: result})."""
    from fer_utils.loading import load_model

    images, labels = np.asarray(split.images), np.asarray(split.labels)
    paths = check_runs(run_dirs, split.class_names)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results, histories, figures, notes = [], {}, {}, []
    sample = _gradcam_sample(labels, settings.gradcam_images if settings.write_figures else 0)
    for path in paths:
        run = load_model(path)
        name = _unique_name(run.name, [result.name for result in results])
        result = evaluate_model(run, split, tta=settings.tta, batch_size=settings.batch_size,
                                n_boot=settings.n_boot, seed=settings.seed, name=name)
        results.append(result)
        if run.history is not None and len(run.history):
            histories[name] = run.history
        if len(sample):
            try:
                figures.update(_gradcam_figure(run.model, result, images, sample, out_dir))
            except ValueError as error:
                notes.append(f"Grad-CAM skipped for {name}: {error}")
        del run  # one model in memory at a time
    if settings.include_ensemble and len(results) >= 2:
        name = _unique_name("ensemble", [result.name for result in results])
        results.append(ensemble_result(results, name=name, n_boot=settings.n_boot, seed=settings.seed))
    summary, mcnemar = summary_table(results), mcnemar_table(results)
    if settings.write_figures:
        figures.update(_comparison_figures(results, histories, images, out_dir))
    recorded = {
        "data": str(getattr(split, "source", "")), "n": int(len(labels)), "class_names": list(split.class_names),
        "tta": settings.tta, "n_boot": settings.n_boot, "seed": settings.seed, "confidence_level": 0.95,
        "runs": [str(path) for path in paths],
    }

    def records(frame):
        return [{key: json_number(value) for key, value in row.items()} for row in frame.to_dict(orient="records")]

    record_output(out_dir / "summary.json", out_dir / "summary.md")  # the manifest of what --overwrite may replace
    atomic_write_json(out_dir / "summary.json", {
        "settings": recorded, "summary": records(summary), "mcnemar": records(mcnemar),
        "models": {result.name: result.to_dict() for result in results}, "figures": figures, "notes": notes,
    })
    atomic_write_text(out_dir / "summary.md", _summary_markdown(results, mcnemar, recorded, figures, notes))
    return summary, {result.name: result for result in results}


def check_runs(run_dirs: Sequence, class_names: Sequence[str] | None = None) -> list:
    """The runs to compare, checked without loading any model (a folder of run folders stands for them;
    "builtin" stays). FileNotFoundError for a path without a model, ValueError for a damaged run file or
    (given `class_names`) a run trained on other classes."""
    paths = []
    for path in run_dirs:
        if str(path) == pretrained.BUILTIN:
            paths.append(pretrained.BUILTIN)
        elif Path(path).is_dir() and not runs.is_run_dir(path) and runs.find_runs(path):
            paths.extend(runs.find_runs(path))
        else:
            paths.append(Path(path))
    if not paths:
        raise ValueError("Give at least one run folder (or .keras file) to compare.")
    for path in paths:
        if path == pretrained.BUILTIN:
            names = pretrained.description()["class_names"]
        else:
            model_path = path / runs.MODEL_FILE if path.is_dir() else path
            if not model_path.is_file():
                raise FileNotFoundError(
                    f"No model at '{model_path}'. Pass run folders written by training (each holds "
                    "model.keras), .keras files, a folder that holds run folders, or 'builtin'."
                )
            # Every file of the run is read (and checked) here, so a damaged one fails before any evaluation.
            config, names = runs.read_config(model_path.parent), runs.read_class_names(model_path.parent)
            runs.read_val_metrics(model_path.parent)
            runs.load_history(model_path.parent)
            names = names or config.get("class_names")
        if names and class_names is not None:
            align_class_names(np.zeros((0, len(names))), names, class_names)
    return paths


def _unique_name(name: str, taken: Sequence[str]) -> str:
    count = 1
    while (candidate := name if count == 1 else f"{name}-{count}") in taken:
        count += 1
    return candidate


def mcnemar_table(results: Sequence[EvaluationResult]) -> pd.DataFrame:
    """McNemar's exact test for every pair: model_a, model_b, b, c, n_discordant, p_value, p_value_holm."""
    rows = []
    for index, first in enumerate(results):
        for second in results[index + 1 :]:
            if not np.array_equal(first.y_true, second.y_true):
                raise ValueError(f"'{first.name}' and '{second.name}' were not evaluated on the same images.")
            rows.append({"model_a": first.name, "model_b": second.name,
                         **mcnemar_exact(first.y_true, first.y_pred, second.y_pred)})
    table = pd.DataFrame(rows, columns=["model_a", "model_b", "b", "c", "n_discordant", "p_value"])
    table["p_value_holm"] = holm_adjust(table["p_value"].to_numpy())
    return table


def summary_table(results: Sequence[EvaluationResult]) -> pd.DataFrame:
    """One row of numbers per model: size, cost, speed, headline metrics with CIs, per-class F1."""
    rows = []
    for result in results:
        intervals, scores = result.confidence_intervals, result.metrics
        row = {"model": result.name, "parameters": result.n_params, "training_time_s": result.training_time_s,
               "images_per_s": result.images_per_second}
        for metric in ("accuracy", "macro_f1"):
            row.update({metric: scores[metric], f"{metric}_ci_low": intervals.get(metric, {}).get("low"),
                        f"{metric}_ci_high": intervals.get(metric, {}).get("high")})
        row.update({key: scores[key] for key in ("balanced_accuracy", "top2_accuracy", "log_loss", "ece")})
        rows.append({**row, **{f"f1_{name}": float(f1) for name, f1 in result.per_class["f1"].items()}})
    return pd.DataFrame(rows)


def formatted_summary(results: Sequence[EvaluationResult]) -> pd.DataFrame:
    """The headline table with readable cells (CIs in brackets), for printing and markdown; per-class F1 is
    `per_class_f1_table`."""
    rows = []
    for result in results:
        intervals, scores = result.confidence_intervals, result.metrics
        rows.append({
            "model": result.name,
            "parameters": _format_optional(result.n_params, ","),
            "training time (s)": _format_optional(result.training_time_s, ".0f"),
            "images/s": _format_optional(result.images_per_second, ".0f"),
            "accuracy [95% CI]": _format_interval(scores["accuracy"], intervals.get("accuracy")),
            "macro-F1 [95% CI]": _format_interval(scores["macro_f1"], intervals.get("macro_f1")),
            "balanced accuracy": f"{scores['balanced_accuracy']:.3f}",
            "top-2 accuracy": f"{scores['top2_accuracy']:.3f}",
            "log loss": f"{scores['log_loss']:.3f}",
            "ECE": f"{scores['ece']:.3f}",
        })
    return pd.DataFrame(rows)


def per_class_f1_table(results: Sequence[EvaluationResult]) -> pd.DataFrame:
    """F1 per class (columns) of each model (rows), beside `formatted_summary` so neither is too wide to read."""
    return pd.DataFrame({result.name: result.per_class["f1"] for result in results}).T.round(3).rename_axis("F1")


# FER2013's own test protocol: Kaggle's test/ folder is PublicTest + PrivateTest; papers report PrivateTest.
PROTOCOL_ROWS = {"private_test": "PrivateTest", "public_test": "PublicTest", "test": "whole test folder"}


def protocol_table(results: Sequence[EvaluationResult], usages=None, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Each result scored on PrivateTest, PublicTest and the whole test folder, with 95% CIs, from its stored
    predictions. `usages` (`data.test_usages` of the same images) None gives the whole-folder row only."""
    rows = []
    for result in results:
        if usages is not None and len(usages) != len(result.y_true):
            raise ValueError(
                f"usages has {len(usages)} entries but '{result.name}' was evaluated on {len(result.y_true)} images; "
                "pass data.test_usages() of the split the results come from."
            )
        parts = [] if usages is None else [(part, np.asarray(usages) == part) for part in ("private_test", "public_test")]
        for part, mask in parts + [("test", np.ones(len(result.y_true), dtype=bool))]:
            scored = evaluate_proba(result.y_true[mask], result.proba[mask], result.class_names, n_boot=n_boot, seed=seed)
            rows.append({
                "model": result.name, "test set": PROTOCOL_ROWS[part], "images": int(mask.sum()),
                **{f"{label} [95% CI]": _format_interval(scored.metrics[metric], scored.confidence_intervals.get(metric))
                   for metric, label in (("accuracy", "accuracy"), ("macro_f1", "macro-F1"))},
            })
    return pd.DataFrame(rows)


def protocol_headline(protocol: pd.DataFrame, results: Sequence[EvaluationResult], demo: bool = False) -> str:
    """One Markdown sentence: the most accurate model's PrivateTest score (whole folder when unknown). `demo`
    True (drawn faces): says the scores carry no meaning beyond the code running, and claims nothing else."""
    best = max(results, key=lambda result: result.metrics["accuracy"]).name
    rows = protocol[protocol["model"] == best].set_index("test set")
    part = "PrivateTest" if "PrivateTest" in rows.index else "whole test folder"
    row = rows.loc[part]
    score = f"{best} scores {row['accuracy [95% CI]']} accuracy (95% CI) on the {part}"
    if demo:
        return (f"**Demo data: {score}, but these are drawn faces, not FER2013.** The figures only show that "
                "the code runs end to end; they are comparable with nothing published.")
    if part == "PrivateTest":
        return (f"**Headline: {score} set** ({row['images']:,} images here, 3,589 in FER2013): the split "
                "papers report.")
    return (f"**{score}** ({row['images']:,} images); its file names do not say PublicTest/PrivateTest, so "
            "this is not the split papers report.")


def _markdown_table(frame: pd.DataFrame) -> str:
    lines = [list(frame.columns), ["---"] * len(frame.columns), *frame.itertuples(index=False)]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines)


def _format_interval(value, interval: Mapping | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if not interval:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{interval['low']:.{digits}f}, {interval['high']:.{digits}f}]"


def _format_optional(value, spec: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


HEADLINE_METRICS = (
    ("accuracy", "Accuracy"), ("balanced_accuracy", "Balanced accuracy"), ("macro_f1", "Macro-F1"),
    ("top2_accuracy", "Top-2 accuracy"), ("log_loss", "Log loss"), ("ece", "Expected calibration error"),
)


def format_report(result: EvaluationResult) -> str:
    """A plain-text report of one evaluation: headline metrics with CIs, speed, per-class table."""
    lines = [f"Model: {result.name}    images: {result.metrics['n']}    TTA: {'on' if result.tta else 'off'}"]
    for key, label in HEADLINE_METRICS:
        interval = result.confidence_intervals.get(key)
        text = _format_interval(result.metrics[key], interval, digits=4)
        lines.append(f"  {label:<28} {text}" + (f"  ({round(interval['level'] * 100)}% CI)" if interval else ""))
    lines.append(f"  {'Inference speed (images/s)':<28} {_format_optional(result.images_per_second, '.1f')}")
    lines += ["", result.per_class.to_string(float_format=lambda value: f"{value:.3f}")]
    return "\n".join(lines)


def comparison_conclusion(results: Sequence[EvaluationResult], mcnemar: pd.DataFrame | None = None,
                          tta_results: Sequence[EvaluationResult] = (), alpha: float = 0.05) -> str:
    """A short markdown conclusion computed from the results: the most accurate single model with its CI,
    whether its lead is significant by McNemar's test at `alpha`, what the ensemble and TTA changed."""
    singles = sorted((result for result in results if not result.members),
                     key=lambda result: result.metrics["accuracy"], reverse=True)
    if not singles:
        raise ValueError("comparison_conclusion needs at least one single (non-ensemble) result.")

    def accuracy(result, interval=False):
        text = f"{result.metrics['accuracy']:.1%}"
        ci = result.confidence_intervals.get("accuracy")
        return text + (f" (95% CI {ci['low']:.1%} to {ci['high']:.1%})" if interval and ci else "")

    def points(difference):  # accuracies differ by percentage points, not percent
        return f"{difference * 100:+.1f} percentage points"

    best = singles[0]
    sentences = [f"On {best.metrics['n']:,} test images, **{best.name}** is the most accurate single model: "
                 f"accuracy {accuracy(best, True)}, macro-F1 {best.metrics['macro_f1']:.3f}."]
    if len(singles) > 1:
        runner_up, verdict = singles[1], ""
        pairs = pd.DataFrame() if mcnemar is None else mcnemar[
            mcnemar.apply(lambda row: {row["model_a"], row["model_b"]} == {best.name, runner_up.name}, axis=1)]
        if len(pairs):
            p_value = pairs.iloc[0]["p_value"]
            verdict = (f" McNemar's exact test gives p = {p_value:.3g}, so the difference "
                       f"{'is significant' if p_value < alpha else 'is **not** significant'} at the {alpha:.0%} level.")
        gap = best.metrics["accuracy"] - runner_up.metrics["accuracy"]
        sentences.append(f"{runner_up.name} reaches {accuracy(runner_up, True)}, {gap * 100:.1f} percentage points "
                         f"below.{verdict}")
    for ensemble in (result for result in results if result.members):
        gap = points(ensemble.metrics["accuracy"] - best.metrics["accuracy"])
        sentences.append(f"The ensemble of {len(ensemble.members)} models scores {accuracy(ensemble)} "
                         f"({gap} against {best.name}).")
    plain = {result.name: result for result in results}
    changes = [f"{points(result.metrics['accuracy'] - plain[name].metrics['accuracy'])} for {name}"
               for result in tta_results for name in [result.name.removesuffix(" + TTA")] if name in plain]
    if changes:
        sentences.append("Flip test-time augmentation changed accuracy by " + ", ".join(changes) + ".")
    fastest = max(singles, key=lambda result: result.images_per_second or 0.0)
    if fastest.images_per_second:
        sentences.append(f"The fastest at inference is {fastest.name}, {fastest.images_per_second:,.0f} images/s here.")
    return " ".join(sentences)


def _summary_markdown(results, mcnemar: pd.DataFrame, settings: dict, figures: dict, notes: list[str]) -> str:
    lines = [
        "# Model comparison", "",
        f"Data: `{settings['data']}` ({settings['n']} images). Test-time augmentation: "
        f"{'horizontal flip' if settings['tta'] else 'off'}. Confidence intervals: 95% percentile bootstrap "
        f"over test images, {settings['n_boot']} resamples, seed {settings['seed']}; they reflect the finite "
        "test set, not the run-to-run variation of training.", "",
        _markdown_table(formatted_summary(results)), "", _markdown_table(per_class_f1_table(results).reset_index()), "",
        "## McNemar's exact test (pairs of models)", "",
        "b = images only model A gets right, c = images only model B gets right; a small p-value means "
        "the two error rates differ. The Holm column corrects for testing every pair at once.", "",
    ]
    if len(mcnemar):
        table = mcnemar.assign(p_value=mcnemar["p_value"].map("{:.4g}".format),
                               p_value_holm=mcnemar["p_value_holm"].map("{:.4g}".format))
        lines.append(_markdown_table(table.rename(columns={
            "model_a": "model A", "model_b": "model B", "n_discordant": "b + c",
            "p_value": "p-value", "p_value_holm": "p-value (Holm, all pairs)"})))
    else:
        lines.append("Only one model: no pairs to test.")
    lines += ["", "## Figures", ""] + [f"- {key}: ![{key}]({file})" for key, file in figures.items()]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _comparison_figures(results: Sequence[EvaluationResult], histories: dict, images: np.ndarray, out_dir: Path) -> dict:
    """Write the comparison figures; return {figure key: file name}."""
    figures = {}
    for name, history in histories.items():
        figures[f"training_curves_{name}"] = _save(plots.plot_training_curves(history, title=f"Training curves: {name}"),
                                                   out_dir / f"training_curves_{_slug(name)}.png")
    if histories:
        figures["validation_curves"] = _save(plots.plot_validation_curves(histories), out_dir / "validation_curves.png")
    figures["confusion_matrices"] = _save(plots.plot_confusion_matrices(
        {r.name: r.confusion for r in results}, results[0].class_names), out_dir / "confusion_matrices.png")
    figures["per_class_f1"] = _save(plots.plot_per_class_f1({r.name: r.per_class for r in results}),
                                    out_dir / "per_class_f1.png")
    # compute_metrics' ECE and these bins use the same default number of confidence bins.
    figures["reliability_diagram"] = _save(plots.plot_reliability_diagram(
        {r.name: (reliability_bins(r.y_true, r.proba), r.metrics["ece"]) for r in results}),
        out_dir / "reliability_diagram.png")
    for r in results:
        figure = plots.plot_misclassified(images, r.y_true, r.proba, r.class_names, title=f"Misclassified faces: {r.name}")
        figures[f"misclassified_{r.name}"] = _save(figure, out_dir / f"misclassified_{_slug(r.name)}.png")
    return figures


def _gradcam_figure(model, result: EvaluationResult, images: np.ndarray, sample: np.ndarray, out_dir: Path) -> dict:
    names = result.class_names
    titles = [f"true: {names[result.y_true[index]]}\npred: {names[result.y_pred[index]]}" for index in sample]
    figure = plots.plot_gradcam(images[sample], gradcam.gradcam_heatmaps(model, images[sample]), titles,
                                title=f"Grad-CAM: {result.name}")
    return {f"gradcam_{result.name}": _save(figure, out_dir / f"gradcam_{_slug(result.name)}.png")}


def _gradcam_sample(labels: np.ndarray, count: int) -> np.ndarray:
    """Up to `count` image indices: the first image of each class, then the next ones."""
    if count <= 0 or len(labels) == 0:
        return np.zeros(0, dtype=np.int64)
    firsts = [int(np.flatnonzero(labels == label)[0]) for label in np.unique(labels)]
    rest = [index for index in range(len(labels)) if index not in set(firsts)]
    return np.asarray((firsts + rest)[:count], dtype=np.int64)


def _slug(name: str) -> str:
    return "".join(character if character.isalnum() or character in "-_." else "_" for character in name)


def _save(figure, path: Path) -> str:
    record_output(path)
    plots.save_figure(figure, path)
    return path.name
