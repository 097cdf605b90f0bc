"""The one way to get a model to evaluate or predict with: `load_model`.

It takes a Keras model, a `fer_utils.runs.Run`, a run folder, a `.keras` file or "builtin" (the shipped
model). `default_model` picks notebook 06's model when none is named; `describe` names one in a line.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from fer_utils import CLASS_NAMES, pretrained, runs

BUILTIN = pretrained.BUILTIN


def load_model(source, class_names=None, name: str | None = None) -> runs.Run:
    """Load `source` and return a `runs.Run`: model, class names, config, history, validation metrics.

    `source` is a Keras model, a `Run`, a run folder, a `.keras` file or "builtin". `class_names` (in
    the model's output order) overrides the stored ones; an in-memory model without them must have one
    output per FER2013 class. `name` overrides the display name. A missing or damaged file raises
    FileNotFoundError / ValueError naming it.
    """
    if isinstance(source, str) and source == BUILTIN:
        run = pretrained.load_run()
    elif isinstance(source, (str, os.PathLike)):
        run = _load_path(Path(source))
    elif isinstance(source, runs.Run):
        run = source
    elif hasattr(source, "predict"):
        run = runs.Run(path=None, model=source, config={}, history=None, class_names=tuple(CLASS_NAMES), val_metrics={})
        if class_names is None:
            _check_model(run.model, CLASS_NAMES, "The model", "pass class_names (in output order) to use it.")
    else:
        raise ValueError(
            f"Expected a Keras model, a run folder, a .keras path or '{BUILTIN}'; got {type(source).__name__}."
        )
    if class_names is not None:
        class_names = tuple(class_names)
        _check_model(run.model, class_names, "The model", "pass the class names in the model's output order.")
        run = dataclasses.replace(run, class_names=class_names)
    if name:
        run = dataclasses.replace(run, config={**run.config, "name": str(name)})
    return run


def _load_path(path: Path) -> runs.Run:
    """A run folder, or a bare `.keras` file (class names from a class_names.json beside it, else FER2013's)."""
    import keras

    from fer_utils.augmentation import random_affine_class

    if not path.exists():
        raise FileNotFoundError(
            f"No run folder or model file at '{path}'. Pass a folder written by training (it holds "
            f"{runs.MODEL_FILE}), a .keras file, or '{BUILTIN}'."
        )
    run_dir, model_path = (path, path / runs.MODEL_FILE) if path.is_dir() else (path.parent, path)
    if path.is_dir() and not model_path.is_file():
        raise FileNotFoundError(
            f"'{path}' is a folder but holds no {runs.MODEL_FILE}; it is not a finished run folder. "
            "Train one (notebooks 03/04 or `python -m fer_utils train --out DIR`)."
        )
    if model_path.suffix != ".keras":
        raise ValueError(f"'{path}' is not a .keras model file or a run folder.")
    # Every file is read (and checked) before the model, the slowest part.
    config, val_metrics, history = runs.read_config(run_dir), runs.read_val_metrics(run_dir), runs.load_history(run_dir)
    class_names = runs.read_class_names(run_dir) or config.get("class_names")
    try:
        # safe_mode stays on (the default): only built-in and registered layers are deserialized.
        random_affine_class()  # registers the project's one custom layer (augmentation, identity here)
        model = keras.models.load_model(model_path, compile=False)
    except Exception as error:  # Keras raises many types (OSError, ValueError, TypeError, zip errors).
        raise ValueError(
            f"'{model_path}' is not a readable Keras model ({type(error).__name__}: {runs.first_line(error)}). "
            "Re-run training to write it again, or point --model to another run."
        ) from None
    fix = (("" if class_names else f"with no {runs.CLASS_NAMES_FILE} beside it, FER2013's are assumed; ")
           + f"write the class names, in output order, to {run_dir / runs.CLASS_NAMES_FILE}.")
    _check_model(model, class_names or CLASS_NAMES, f"'{model_path}'", fix)
    return runs.Run(path=run_dir, model=model, config=config, history=history,
                    class_names=tuple(class_names or CLASS_NAMES), val_metrics=val_metrics)


def _check_model(model, class_names, what: str, fix: str) -> None:
    """Refuse, in one line, a model fer_utils cannot feed or read, before it runs (Keras would fail mid-run, in ten).
    Stand-ins without `input_shape` / `output_shape` are taken on trust."""
    taken, needed = getattr(model, "input_shape", None), (None, 48, 48, 1)
    if taken is not None and (not isinstance(taken, tuple) or len(taken) != 4
                              or any(size not in (None, want) for size, want in zip(taken[1:], needed[1:]))):
        raise ValueError(f"{what} takes input {taken} but fer_utils gives it 48x48 grayscale faces, {needed}; use a "
                         f"model trained by fer_utils (a run folder, or '{BUILTIN}'), or one whose input is {needed}.")
    outputs = getattr(model, "output_shape", None)
    if isinstance(outputs, list) or (outputs is not None and len(outputs) != 2):
        raise ValueError(f"{what} has outputs {outputs} but fer_utils reads one, (batch, classes) probabilities; use a "
                         f"model trained by fer_utils (a run folder, or '{BUILTIN}').")
    if outputs is not None and int(outputs[-1]) != len(class_names):
        raise ValueError(f"{what} has {outputs[-1]} outputs but {len(class_names)} classes are named "
                         f"({list(class_names)}); {fix}")


def default_model(runs_dir) -> str | Path:
    """The reader's best run in `runs_dir` trained on real data, else "builtin" (on a real photo, a run trained
    on the drawn demo faces guesses close to arbitrarily)."""
    candidates = []
    for run_dir in runs.find_runs(runs_dir):
        if runs.data_provenance(runs.read_config(run_dir)).get("source") == "demo":
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
    return f"{run.name}" + (f" ({run.path})" if run.path is not None else "")
