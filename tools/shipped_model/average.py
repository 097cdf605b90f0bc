"""Weight averaging: one run folder whose model's weights are the weighted mean of several runs' weights.

    python tools/shipped_model/average.py runs/stage1 runs/stage3 --mix 0.5 0.5 --data DATA --out runs/averaged

Runs that continue one another (each a warm restart of the one before) end at nearby points of
weight space, and the mean of their weights often predicts better than any of them at the cost of
one model (stochastic weight averaging, Izmailov et al. 2018; "model soups", Wortsman et al. 2022).
This is how member 1 of the shipped model was made (see README.md here). The runs must share the
architecture, the classes and the validation split; the average is scored on that split, which is
where `--mix` is to be chosen. BatchNorm's moving statistics are averaged like the other weights.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py, also when this file is loaded by path
import common  # noqa: E402


def normalised_mix(mix, count: int) -> list[float]:
    """`mix` as `count` shares summing to 1 (None: equal shares). ValueError for a bad mix."""
    if count < 2:
        raise ValueError(f"Averaging needs at least two models; got {count}.")
    if mix is None:
        return [1.0 / count] * count
    mix = [float(share) for share in mix]
    if len(mix) != count:
        raise ValueError(f"Give one mixing weight per model: {count} models, {len(mix)} weights ({mix}).")
    if any(not np.isfinite(share) or share < 0 for share in mix) or sum(mix) <= 0:
        raise ValueError(f"Mixing weights must be non-negative numbers with a positive sum; got {mix}.")
    return [share / sum(mix) for share in mix]


def average_weights(weight_lists, mix=None) -> list[np.ndarray]:
    """The weighted mean, array by array, of several models' `get_weights()` lists (`mix` as `normalised_mix`)."""
    weight_lists = [list(weights) for weights in weight_lists]
    shares = normalised_mix(mix, len(weight_lists))
    shapes = [[np.shape(array) for array in weights] for weights in weight_lists]
    for index, model_shapes in enumerate(shapes[1:], start=2):
        if model_shapes != shapes[0]:
            raise ValueError(f"Model {index}'s weight arrays do not match model 1's array for array; only models of "
                             "the same architecture can be averaged.")
    return [
        sum(share * np.asarray(arrays[index], dtype=np.float64) for share, arrays in zip(shares, weight_lists))
        .astype(np.asarray(weight_lists[0][index]).dtype)
        for index in range(len(shapes[0]))
    ]


def average_runs(run_dirs, data, out, mix=None, val_fraction=None, seed=None, progress: bool = True) -> Path:
    """Average the runs in `run_dirs` (run folders) with shares `mix`, score it on validation, write run folder `out`.

    `data` is the dataset root the runs trained on; their validation split is carved from it as the
    first run's hyperparameters say (`val_fraction`, `seed` override them) and must be every run's.
    `out` must be new or empty. Its config.json is the first run's with `averaged_from` (each run,
    its share and how it was trained) and the summed training time; history.csv joins the runs'.
    """
    from fer_utils import loading, runs

    shares = normalised_mix(mix, len(run_dirs))
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"'{out}' is not an empty folder; pass a new or empty folder as --out.")
    loaded = [loading.load_model(Path(run_dir)) for run_dir in run_dirs]
    first = loaded[0]
    for run_dir, run in zip(run_dirs, loaded):
        if not runs.data_provenance(run.config).get("validation"):
            raise ValueError(f"'{run_dir}' records no validation split (a bare .keras file?); pass run folders "
                             "written by training, so their split can be checked.")
        if (run.config.get("backbone"), run.config.get("img_size"), run.class_names) != (
                first.config.get("backbone"), first.config.get("img_size"), first.class_names):
            raise ValueError(f"'{run_dir}' and '{run_dirs[0]}' differ in backbone, input size or classes; only runs "
                             "of one architecture and class list can be averaged.")
    hyper = first.config.get("hyperparameters", {})
    val, record = common.validation_split(data, val_fraction or hyper.get("val_fraction", 0.1),
                                          hyper.get("seed", 42) if seed is None else seed, progress=progress)
    for run_dir, run in zip(run_dirs, loaded):
        common.check_same_split(str(run_dir), run.config, record)

    model = first.model
    model.set_weights(average_weights([run.model.get_weights() for run in loaded], shares))
    val_metrics = common.validation_metrics(model, val)
    dropped = ("lineage", "selected_phase")  # keys of older runs that no longer describe this one
    config = {
        **{key: value for key, value in first.config.items() if key not in dropped},
        "name": out.name,
        "phases": [phase for run in loaded for phase in run.config.get("phases", [])],
        "n_params": int(model.count_params()),
        "averaged_from": [_stage(run_dir, run, share) for run_dir, run, share in zip(run_dirs, loaded, shares)],
        "wall_time_s": {"total": round(sum(common.training_seconds(run.config) for run in loaded), 3)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    runs.save_run(out, model, config, history=_joined_history(run_dirs, loaded), val_metrics=val_metrics)
    if progress:
        for run_dir, run, share in zip(run_dirs, loaded, shares):
            print(f"  {share:.3f} x {run_dir}  (val accuracy {run.val_metrics.get('accuracy', float('nan')):.4f})")
        print(f"Averaged model: val accuracy {val_metrics['accuracy']:.4f}, macro-F1 {val_metrics['macro_f1']:.4f}")
    return out


def _stage(run_dir, run, share) -> dict:
    """One `averaged_from` entry, what package.py's card lists: the run, its share and how it was trained."""
    hyper = run.config.get("hyperparameters", {})
    entry = {
        "run": str(run_dir), "name": run.config.get("name") or Path(run_dir).name, "share": round(share, 6),
        "val_accuracy": run.val_metrics.get("accuracy"),
        "epochs": len(run.history) if run.history is not None else None,
        "minutes": round(common.training_seconds(run.config) / 60, 1),
        "learning_rate": hyper.get("learning_rate"),
        "init_from": hyper.get("init_from"),  # recorded by runs trained before issue 30's rewrite
    }
    if run.config.get("averaged_from"):
        entry["averaged_from"] = run.config["averaged_from"]
    return entry


def _joined_history(run_dirs, loaded):
    """The runs' histories one after another, each row's phase prefixed with its run's folder name."""
    import pandas as pd

    frames = []
    for run_dir, run in zip(run_dirs, loaded):
        history = run.history.copy() if run.history is not None else pd.DataFrame()
        if len(history) and "phase" in history.columns:
            history["phase"] = Path(run_dir).name + "/" + history["phase"].astype(str)
        frames.append(history)
    return pd.concat(frames, ignore_index=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="Two or more run folders of one architecture.")
    parser.add_argument("--data", required=True, help="The dataset root the runs were trained on.")
    parser.add_argument("--out", required=True, help="The run folder to write (new or empty).")
    parser.add_argument("--mix", type=float, nargs="+", help="One non-negative weight per run (default: equal).")
    parser.add_argument("--val-fraction", type=float, help="Validation share of train/ (default: the first run's).")
    parser.add_argument("--seed", type=int, help="Seed of the validation split (default: the first run's).")
    args = parser.parse_args(argv)
    try:
        normalised_mix(args.mix, len(args.runs))  # before loading anything
        average_runs(args.runs, args.data, args.out, args.mix, args.val_fraction, args.seed)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
