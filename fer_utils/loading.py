"""The one way to get a model to evaluate or predict with: `load_model`.

Evaluation, face prediction, export, the webcam view and the command line all call it, whatever
they were handed: a Keras model, a `fer_utils.runs.Run`, a run folder, a `.keras` file, or the name
"builtin" for the model that ships with the package (`fer_utils.pretrained`). `default_model`
picks what notebook 06 uses when the reader names none.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from fer_utils import CLASS_NAMES, pretrained, runs

BUILTIN = pretrained.BUILTIN


def load_model(source, class_names=None, name: str | None = None, compile: bool = False) -> runs.Run:
    """Load `source` and say what it is: a `Run` with the model, class names, display name, config.

    `source` is a Keras model, a `Run`, a run folder, a `.keras` file or "builtin". `class_names`
    (in the model's output order) overrides the stored ones; without them an in-memory model must
    have one output per FER2013 class. `name` overrides the display name. The Run's `path` is None
    for an in-memory or the builtin model.
    """
    if isinstance(source, str) and source == BUILTIN:
        source = pretrained.load_run()
    elif isinstance(source, (str, os.PathLike)):
        source = runs.load_run(source, compile=compile)
    if isinstance(source, runs.Run):
        run = source
    else:
        run = _in_memory_run(source, class_names)
    if class_names is not None:
        run = dataclasses.replace(run, class_names=_checked_class_names(run.model, class_names))
    if name:
        run = dataclasses.replace(run, config={**run.config, "name": str(name)})
    return run


def _in_memory_run(model, class_names) -> runs.Run:
    if not hasattr(model, "predict"):
        raise ValueError(
            f"Expected a Keras model, a run folder, a .keras path or '{BUILTIN}'; got {type(model).__name__}."
        )
    outputs = int(model.output_shape[-1])
    if class_names is None and outputs != len(CLASS_NAMES):
        raise ValueError(f"The model has {outputs} outputs; pass class_names (in output order) to use it.")
    return runs.Run(path=None, model=model, config={}, history=None, class_names=tuple(CLASS_NAMES), val_metrics={})


def _checked_class_names(model, class_names) -> tuple[str, ...]:
    class_names = tuple(class_names)
    outputs = int(model.output_shape[-1])
    if outputs != len(class_names):
        raise ValueError(
            f"The model has {outputs} outputs but {len(class_names)} class names were given "
            f"({list(class_names)}); pass the class names in the model's output order."
        )
    return class_names


def default_model(runs_dir) -> str | Path:
    """The reader's best run in `runs_dir` trained on real data, else "builtin".

    Runs trained on the drawn demo faces (config.json `data.source` "demo") are skipped: on a real
    photo their guesses are close to arbitrary, and the shipped model was trained on FER2013.
    """
    runs_dir = Path(runs_dir)
    candidates = []
    for run_dir in runs.find_runs(runs_dir) if runs_dir.is_dir() else []:
        config = runs.read_config(run_dir)
        if runs.data_provenance(config).get("source") == "demo":
            continue
        accuracy = runs.read_val_metrics(run_dir).get("accuracy")
        if accuracy is not None:
            candidates.append((float(accuracy), str(run_dir)))
    return Path(max(candidates)[1]) if candidates else BUILTIN


def describe(run: runs.Run) -> str:
    """One line naming the model a prediction came from (the builtin one with its test accuracy)."""
    if run.config.get("name") == BUILTIN and "test_metrics" in run.config:
        accuracy = run.config["test_metrics"]["plain"]["accuracy"]
        members, backbone = run.config.get("members"), run.config.get("backbone", "CNN")
        kind = f"an ensemble of {len(members)} {backbone} networks" if members else f"a {backbone}"
        return (f"the shipped model (builtin: {kind} trained on FER2013, {accuracy:.1%} on PublicTest; "
                f"see fer_utils/pretrained_model/MODEL_CARD.md)")
    where = f" ({run.path})" if run.path is not None else ""
    return f"{run.name}{where}"
