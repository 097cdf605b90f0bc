"""Weight averaging: one model whose weights are the weighted mean of several runs' weights.

Runs that continue one another (each a warm restart of the one before, `train --init-from`) end
at nearby points of weight space, and the mean of their weights often predicts better than any
of them while costing one model at inference (stochastic weight averaging, Izmailov et al. 2018;
"model soups", Wortsman et al. 2022). `average_runs` checks that the runs can be averaged (same
architecture, same classes, the same validation split), writes the averaged model as a run folder
and scores it on that validation split, which is where the mixing weights are to be chosen.
BatchNorm's moving statistics are averaged like the other weights (no pass re-estimates them).
The shipped model (`builtin`) can be one of the runs when it is one network, e.g. to average it
with a run that continued from it (`train --init-from builtin`); it is checked like the others.
An ensemble of networks (what ships today) has no one set of weights to average, and is refused.

    python -m fer_utils average runs/stage1 runs/stage2 --mix 0.25 0.75 --data DATA --out runs/averaged
    python -m fer_utils average builtin runs/continued --data DATA --out runs/averaged
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fer_utils import lineage, loading, pretrained, runs, training


def average_weights(weight_lists, mix=None) -> list[np.ndarray]:
    """The weighted mean, array by array, of several models' `get_weights()` lists.

    `mix` holds one non-negative weight per model (normalised to sum to 1); None is the plain mean.
    Raises ValueError when the lists do not match array for array or `mix` is unusable.
    """
    weight_lists = [list(weights) for weights in weight_lists]
    mix = normalised_mix(mix, len(weight_lists))
    shapes = [[np.shape(array) for array in weights] for weights in weight_lists]
    for index, model_shapes in enumerate(shapes[1:], start=2):
        if model_shapes != shapes[0]:
            raise ValueError(
                f"Model {index} has {len(model_shapes)} weight arrays that do not match model 1's {len(shapes[0])} "
                "array for array; only models of the same architecture can be averaged."
            )
    return [
        sum(share * np.asarray(arrays[index], dtype=np.float64) for share, arrays in zip(mix, weight_lists))
        .astype(np.asarray(weight_lists[0][index]).dtype)
        for index in range(len(shapes[0]))
    ]


def normalised_mix(mix, count: int) -> list[float]:
    """`mix` as `count` shares summing to 1 (None: equal shares). Raises ValueError for a bad mix."""
    if count < 2:
        raise ValueError(f"Averaging needs at least two models; got {count}.")
    if mix is None:
        return [1.0 / count] * count
    mix = [float(share) for share in mix]
    if len(mix) != count:
        raise ValueError(f"Give one mixing weight per model: {count} models, {len(mix)} weights ({mix}).")
    if any(not np.isfinite(share) or share < 0 for share in mix) or sum(mix) <= 0:
        raise ValueError(f"Mixing weights must be non-negative numbers with a positive sum; got {mix}.")
    total = sum(mix)
    return [share / total for share in mix]


def average_runs(run_dirs, data, out, mix=None, cache=True, progress: bool = True) -> Path:
    """Average the weights of the runs in `run_dirs`, score the result on validation, write run folder `out`.

    Args:
        run_dirs: Two or more run folders (or "builtin", the shipped model) of one architecture and
            class list, trained on the same data with the same validation split (their config says so).
        data: The dataset the runs were trained on (anything `training.training_splits` takes): its
            validation split, carved as the runs' config says, scores the averaged model.
        out: The run folder to write: new, or empty. Its config.json names the runs and their
            shares; its history.csv is the runs' histories one after another.
        mix: One non-negative weight per run (normalised); None averages them equally.
        cache: Read and write the decoded-data cache.
        progress: Print each run's and the average's validation accuracy.

    Returns:
        `out` as a Path.
    """
    run_dirs = [run_dir if run_dir == loading.BUILTIN else Path(run_dir) for run_dir in run_dirs]
    shares = normalised_mix(mix, len(run_dirs))
    if all(run_dir == loading.BUILTIN for run_dir in run_dirs):
        raise ValueError("Averaging the shipped model with itself changes nothing; pass at least one run folder.")
    if loading.BUILTIN in run_dirs and pretrained.is_ensemble():
        raise pretrained.single_network_error("a stage of a weight average")
    out = runs.check_run_folder(out)
    if runs.is_run_dir(out):
        raise runs.RunFolderError(f"'{out}' already holds a run; pass a new or empty folder as --out.")
    loaded = [loading.load_model(run_dir) for run_dir in run_dirs]
    _check_compatible(run_dirs, loaded)
    # The new run's config starts from a run folder's, never from the shipped model's card figures.
    base = next(run for run_dir, run in zip(run_dirs, loaded) if run_dir != loading.BUILTIN)
    hyperparameters = base.config.get("hyperparameters", {})
    training_data = training.training_splits(
        data, hyperparameters.get("val_fraction", 0.1), hyperparameters.get("seed", 42), cache=cache, progress=progress,
    )
    stage_lineages = [lineage.lineage_of(run_dir, run) for run_dir, run in zip(run_dirs, loaded)]
    for run_dir, run, stage_lineage in zip(run_dirs, loaded, stage_lineages):
        _check_same_data(run_dir, run.config, training_data.provenance)
        # A stage that started from a model of this data split another way has seen validation images.
        lineage.check_starting_point(str(run_dir), stage_lineage, training_data.provenance, role="Stage")

    model = loaded[0].model
    model.set_weights(average_weights([run.model.get_weights() for run in loaded], shares))
    val_metrics = training.validation_metrics(model, training_data.val)
    config = _averaged_config(base.config, out, run_dirs, loaded, shares, model)
    config["lineage"] = lineage.merged(*stage_lineages)
    runs.claim_run_folder(out)
    runs.save_run(out, model, config, history=_joined_history(run_dirs, loaded), val_metrics=val_metrics)
    if progress:
        for run_dir, run, share in zip(run_dirs, loaded, shares):
            print(f"  {share:.3f} x {run_dir}  (val accuracy {run.val_metrics.get('accuracy', float('nan')):.4f})")
        print(f"Averaged model: val accuracy {val_metrics['accuracy']:.4f}, macro-F1 {val_metrics['macro_f1']:.4f}")
    return out


def _check_compatible(run_dirs, loaded) -> None:
    """Raise ValueError unless every run has the first one's backbone, input size, classes and weights."""
    first = loaded[0]
    for run_dir, run in zip(run_dirs[1:], loaded[1:]):
        for field in ("backbone", "img_size"):
            if run.config.get(field) != first.config.get(field):
                raise ValueError(
                    f"'{run_dir}' has {field} {run.config.get(field)!r}, '{run_dirs[0]}' has "
                    f"{first.config.get(field)!r}: only runs of one architecture can be averaged."
                )
        if tuple(run.class_names) != tuple(first.class_names):
            raise ValueError(f"'{run_dir}' predicts classes {list(run.class_names)}, '{run_dirs[0]}' "
                             f"{list(first.class_names)}: average runs with the same classes in the same order.")
        if [w.shape for w in run.model.get_weights()] != [w.shape for w in first.model.get_weights()]:
            raise ValueError(f"'{run_dir}' and '{run_dirs[0]}' have different weight shapes (head width?); "
                             "only runs of one architecture can be averaged.")
        validations = {runs.data_provenance(r.config).get("validation") for r in (first, run)} - {None}
        if len(validations) > 1:
            raise ValueError(
                f"'{run_dir}' and '{run_dirs[0]}' were validated on different splits "
                f"({runs.data_provenance(run.config).get('validation')!r} and "
                f"{runs.data_provenance(first.config).get('validation')!r}): one run's validation images may be "
                "another's training images, so no split could score their average fairly."
            )


def _check_same_data(run_dir: Path, config: dict, provenance: dict) -> None:
    """Raise ValueError when `data` is not the dataset the run was trained on.

    Compared by what the images are (split sizes and class counts), not by the dataset fingerprint:
    that one hashes file times too, which change when the same files are copied or unpacked again.
    """
    trained_on = runs.data_provenance(config)
    for field in ("train_size", "val_size", "train_class_counts"):
        known = trained_on.get(field) is not None and provenance.get(field) is not None
        if known and trained_on[field] != provenance[field]:
            raise ValueError(
                f"The data given has {field} {provenance[field]}, but '{run_dir}' was trained with {trained_on[field]}: "
                "it is not the dataset the runs were trained on. Pass the same --data the runs were trained with, "
                "so their validation split scores the average."
            )


def _averaged_config(first_config: dict, out: Path, run_dirs, loaded, shares, model) -> dict:
    """config.json of the averaged run: the first run's, plus what was averaged and the total training time."""
    total_seconds = sum(float(run.config.get("wall_time_s", {}).get("total", 0.0)) for run in loaded)
    return {
        **first_config,
        "name": out.name,
        "phases": [phase for run in loaded for phase in run.config.get("phases", [])],
        "selected_phase": "averaged",
        "n_params": int(model.count_params()),
        "averaged_from": [_stage_entry(run_dir, run, share) for run_dir, run, share in zip(run_dirs, loaded, shares)],
        "wall_time_s": {"total": round(total_seconds, 3)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _stage_entry(run_dir, run, share) -> dict:
    """One `averaged_from` entry: the run, its share and how it was trained (and what it averaged, if it did)."""
    hyperparameters = run.config.get("hyperparameters", {})
    entry = {
        "run": str(run_dir), "name": run.config.get("name", Path(run_dir).name), "share": round(share, 6),
        "val_accuracy": run.val_metrics.get("accuracy"),
        "epochs": len(run.history) if run.history is not None else run.config.get("training", {}).get("epochs"),
        "minutes": round(float(run.config.get("wall_time_s", {}).get("total", 0.0)) / 60, 1),
        "learning_rate": hyperparameters.get("learning_rate"),
        "init_from": hyperparameters.get("init_from"),
    }
    if hyperparameters.get("teachers"):  # a distilled run (`train --teachers`)
        entry["teachers"] = list(hyperparameters["teachers"])
        entry["teacher_weight"] = hyperparameters.get("teacher_weight")
    if run.config.get("averaged_from"):
        entry["averaged_from"] = run.config["averaged_from"]
    return entry


def _joined_history(run_dirs, loaded):
    """The runs' histories one after another, each row's phase prefixed with its run's folder name."""
    import pandas as pd

    frames = []
    for run_dir, run in zip(run_dirs, loaded):
        if run.history is None:  # the shipped model keeps no history
            continue
        history = run.history.copy()
        if len(history) and "phase" in history.columns:
            history["phase"] = Path(run_dir).name + "/" + history["phase"].astype(str)
        frames.append(history)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
