"""Run folders: the one place a trained model and its provenance live on disk.

A run folder holds everything needed to evaluate or reuse a training run, with no retraining:

    RUN_DIR/
        model.keras         the whole model: raw 48x48x1 pixels (0..255) in, class probabilities out
        class_names.json    the class order of the model's outputs, e.g. ["angry", ..., "neutral"]
        config.json         backbone, weights provenance, image size, phases, hyper-parameters,
                            dataset fingerprint, class names, library versions, device, wall times
        history.csv         one row per epoch: epoch, phase, loss, accuracy, val_loss, val_accuracy, ...
        val_metrics.json    metrics on the validation split carved from train (never the test split)
        .fer-run            marker: training writes only into empty folders or folders with this file
        .lock               held by the `train` process writing the folder (pid and host)

Every file is written atomically (to a temporary name, then renamed), so a run killed half-way
never leaves a truncated file behind. Every file read back is checked; a hand-edited or damaged
one raises a ValueError naming the file and the field.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import socket
import time
from pathlib import Path
from typing import Any

from fer_utils.files import (
    FILE_MODE,
    TEMPORARY_SUFFIX,
    atomic_write_json,
    atomic_write_path,
    atomic_write_text,
    remove_stale_temporaries,
)

MODEL_FILE = "model.keras"
CLASS_NAMES_FILE = "class_names.json"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
VAL_METRICS_FILE = "val_metrics.json"
ARTIFACT_FILES = (MODEL_FILE, CLASS_NAMES_FILE, CONFIG_FILE, HISTORY_FILE, VAL_METRICS_FILE)
# A run folder is recognised as one of ours by this marker, written before anything else.
RUN_MARKER_FILE = ".fer-run"
RUN_FORMAT = 1
LOCK_FILE = ".lock"
# What a folder may hold and still count as empty: a lock left by a killed `train`, and the files
# file browsers drop into any folder they show.
_IGNORED_IN_NEW_FOLDERS = frozenset({LOCK_FILE, ".DS_Store", "Thumbs.db", "desktop.ini"})
# An unreadable lock younger than this may still be being written by its owner.
LOCK_WRITE_GRACE_S = 10.0
# The numeric columns training writes to history.csv, with the values they may hold.
HISTORY_RANGES = {
    "epoch": (1, math.inf),
    "loss": (0, math.inf),
    "val_loss": (0, math.inf),
    "accuracy": (0, 1),
    "val_accuracy": (0, 1),
    "learning_rate": (0, math.inf),
    "seconds": (0, math.inf),
}
_FIX_RUN_FILE = "Restore the file from the run that wrote it, or re-run training into a new folder."


@dataclasses.dataclass
class Run:
    """A loaded model with what is known about it: a run folder, a `.keras` file or an in-memory model.

    `path` is the run folder (None for a model that was passed in memory).
    """

    path: Path | None
    model: Any  # keras.Model
    config: dict
    history: Any  # pandas.DataFrame (may be empty)
    class_names: tuple[str, ...]
    val_metrics: dict

    @property
    def name(self) -> str:
        """A short display name: the config's `name`, else the folder's (or the model's) name."""
        if self.config.get("name"):
            return str(self.config["name"])
        return self.path.name if self.path is not None else str(getattr(self.model, "name", "model"))


def save_model_atomic(model, path: str | os.PathLike) -> Path:
    """Save a Keras model as `.keras` atomically (Keras writes a unique temporary file, we rename it)."""
    # Keras insists on the .keras suffix, hence the temporary's `.tmp.keras` ending.
    return atomic_write_path(path, model.save, suffix=TEMPORARY_SUFFIX + ".keras")


def save_run(run_dir, model, config: dict, history=None, val_metrics: dict | None = None) -> Path:
    """Write a complete run folder and return its path.

    `config` must contain `class_names`. `history` is a pandas DataFrame (or None).
    """
    import pandas as pd

    run_dir = Path(run_dir)
    if "class_names" not in config:
        raise ValueError("save_run: config must contain 'class_names' (the order of the model's outputs).")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_model_atomic(model, run_dir / MODEL_FILE)
    atomic_write_json(run_dir / CLASS_NAMES_FILE, list(config["class_names"]))
    atomic_write_json(run_dir / CONFIG_FILE, config)
    history = history if history is not None else pd.DataFrame()
    atomic_write_text(run_dir / HISTORY_FILE, history.to_csv(index=False))
    atomic_write_json(run_dir / VAL_METRICS_FILE, val_metrics or {})
    return run_dir


def is_run_dir(path: str | os.PathLike) -> bool:
    """True when `path` is a folder holding a `model.keras`."""
    return (Path(path) / MODEL_FILE).is_file()


def find_runs(root: str | os.PathLike) -> list[Path]:
    """Return the run folders directly inside `root` (sorted by name); [] when there are none."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(child for child in root.iterdir() if child.is_dir() and is_run_dir(child))


# ---------------------------------------------------------------------------------------------
# Owning a run folder: the marker, the lock, deleting only what the project wrote
# ---------------------------------------------------------------------------------------------
class RunFolderError(ValueError):
    """A run folder that cannot be used as asked: someone else's files, or another `train` in it."""


def check_run_folder(run_dir: str | os.PathLike, recognise=None) -> Path:
    """Raise `RunFolderError` unless `run_dir` is missing, empty, or a run folder of ours; write nothing.

    Ours means: it holds the marker file, or `recognise(run_dir)` says it is a run folder written
    before markers existed. The error names what the folder holds.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"'{run_dir}' is a file, not a folder. Pass a new or empty folder as --out.")
    if (run_dir / RUN_MARKER_FILE).is_file() or not run_dir.is_dir():
        return run_dir
    present = sorted(entry.name for entry in run_dir.iterdir() if entry.name not in _IGNORED_IN_NEW_FOLDERS)
    if present and not (recognise and recognise(run_dir)):
        shown = ", ".join(present[:5]) + (f" and {len(present) - 5} more" if len(present) > 5 else "")
        raise RunFolderError(
            f"'{run_dir}' is not empty and is not a fer_utils run folder (it has no {RUN_MARKER_FILE} marker); "
            f"it holds {shown}. Pass a new or empty folder as --out; --overwrite never deletes files the "
            "project did not write."
        )
    return run_dir


def claim_run_folder(run_dir: str | os.PathLike, recognise=None) -> Path:
    """Make `run_dir` a run folder of ours (`check_run_folder`), creating it and its marker if needed.

    Only the marker is written here; nothing that is already in the folder is touched.
    """
    run_dir = check_run_folder(run_dir, recognise)
    if not (run_dir / RUN_MARKER_FILE).is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / RUN_MARKER_FILE, {"fer_utils_run_folder": RUN_FORMAT})
    return run_dir


def remove_artifacts(run_dir: str | os.PathLike) -> None:
    """Delete the files `save_run` writes, and temporaries of killed writes; nothing else."""
    run_dir = Path(run_dir)
    for name in ARTIFACT_FILES:
        (run_dir / name).unlink(missing_ok=True)
    remove_stale_temporaries(run_dir, older_than_s=0)


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike):
    """Hold RUN_DIR/.lock while the block runs, so that two processes never write one run folder.

    The lock file holds the owner's pid and host. A lock left by a process that is no longer alive
    on this host is stale and taken over; a live one raises `RunFolderError`.
    """
    path = Path(run_dir) / LOCK_FILE
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for attempt in range(2):
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
        except FileExistsError:
            holder = _read_lock(path)
            if attempt == 0 and _lock_is_stale(path, holder):
                # Two processes taking over one stale lock at the same instant could both succeed;
                # that needs two commands started within microseconds of each other after a kill.
                path.unlink(missing_ok=True)
                continue
            raise RunFolderError(_lock_message(Path(run_dir), path, holder)) from None
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(owner, stream)
        break
    try:
        yield path
    finally:
        # Remove the lock only while it is still ours (a user may have deleted and re-taken it).
        if _read_lock(path) == owner:
            path.unlink(missing_ok=True)


def _read_lock(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _lock_is_stale(path: Path, holder: dict | None) -> bool:
    if holder is None:
        # Unreadable: stale unless it was created a moment ago (its owner is still writing it).
        try:
            return time.time() - path.stat().st_mtime > LOCK_WRITE_GRACE_S
        except OSError:
            return True
    if holder.get("host") != socket.gethostname():
        return False  # a process on another machine: its liveness cannot be checked from here
    return not _pid_alive(holder.get("pid"))


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def _lock_message(run_dir: Path, path: Path, holder: dict | None) -> str:
    who = f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}" if holder else "a process"
    return (
        f"'{run_dir}' is in use by another `train` ({who}). Wait for it to finish or use another --out "
        f"folder; if no such process is running, delete {path}."
    )


# ---------------------------------------------------------------------------------------------
# Reading a run folder: every file is checked, errors name the file and the field
# ---------------------------------------------------------------------------------------------
def load_history(path: str | os.PathLike):
    """The history.csv of a run folder as a DataFrame (empty when missing), without loading the model.

    Raises ValueError naming the file, the column and the row when the csv is unreadable or holds
    a non-numeric or out-of-range value in one of the columns training writes.
    """
    import pandas as pd

    history_path = Path(path) / HISTORY_FILE
    if not history_path.is_file():
        return pd.DataFrame()
    try:
        text = history_path.read_text(encoding="utf-8")
        if not text.strip():
            return pd.DataFrame()
        history = pd.read_csv(history_path)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ValueError(f"'{history_path}' is not a readable csv ({_first_line(error)}). {_FIX_RUN_FILE}") from None
    for column, (low, high) in HISTORY_RANGES.items():
        if column in history.columns:
            _check_history_column(history_path, history, column, low, high)
    return history


def _check_history_column(path: Path, history, column: str, low: float, high: float) -> None:
    import pandas as pd

    values = pd.to_numeric(history[column], errors="coerce")
    for row, (raw, value) in enumerate(zip(history[column], values), start=2):
        if pd.isna(raw):
            continue  # an empty cell: the value was not measured
        if pd.isna(value) or not low <= value <= high:
            raise ValueError(
                f"'{path}' row {row}, column '{column}': {raw!r} is not a number in [{low:g}, {high:g}]. "
                f"{_FIX_RUN_FILE}"
            )


def read_config(run_dir: str | os.PathLike) -> dict:
    """config.json of a run folder ({} when missing), checked field by field."""
    path = Path(run_dir) / CONFIG_FILE
    config = _read_json(path, default={})
    if not isinstance(config, dict):
        raise ValueError(f"'{path}' must hold a JSON object, got a {_json_type(config)}. {_FIX_RUN_FILE}")
    if config.get("name") is not None and not isinstance(config["name"], str):
        _field_error(path, "name", "a string", config["name"])
    if "class_names" in config:
        _check_class_names(path, config["class_names"], field="class_names")
    for field in ("n_params", "img_size", "train_size", "val_size"):
        if field in config and not _is_number(config[field], low=0, integer=True):
            _field_error(path, field, "a non-negative integer", config[field])
    provenance = config.get("data")
    if isinstance(provenance, dict):
        for field in ("train_size", "val_size"):
            if field in provenance and not _is_number(provenance[field], low=0, integer=True):
                _field_error(path, f"data.{field}", "a non-negative integer", provenance[field])
    wall_time = config.get("wall_time_s")
    if wall_time is not None:
        values = wall_time.items() if isinstance(wall_time, dict) else [("", wall_time)]
        for key, value in values:
            if not _is_number(value, low=0):
                _field_error(path, "wall_time_s" + (f".{key}" if key else ""), "a number of seconds >= 0", value)
    return config


def data_provenance(config: dict) -> dict:
    """config.json's `data` entry (path, source, fingerprint, validation, sizes), also for older runs.

    Runs written before there was one shape recorded the data path as a string under `data` (the
    command line) or as `dataset: {path, source}` (the notebooks), with the fingerprint and sizes
    at the top level; those are read into the same keys. Unknown values are None.
    """
    provenance = config.get("data")
    if isinstance(provenance, dict):
        return dict(provenance)
    legacy = config.get("dataset") if isinstance(config.get("dataset"), dict) else {}
    return {
        "path": provenance if isinstance(provenance, str) else legacy.get("path"),
        "source": legacy.get("source") or ("argument" if isinstance(provenance, str) else None),
        "fingerprint": config.get("dataset_fingerprint"),
        "validation": config.get("val_source"),
        "train_size": config.get("train_size"),
        "val_size": config.get("val_size"),
        "train_class_counts": config.get("train_class_counts"),
    }


def read_class_names(run_dir: str | os.PathLike) -> list[str] | None:
    """class_names.json of a run folder (None when missing), checked."""
    path = Path(run_dir) / CLASS_NAMES_FILE
    names = _read_json(path, default=None)
    return None if names is None else _check_class_names(path, names)


def read_val_metrics(run_dir: str | os.PathLike) -> dict:
    """val_metrics.json of a run folder ({} when missing), checked."""
    path = Path(run_dir) / VAL_METRICS_FILE
    metrics = _read_json(path, default={})
    if not isinstance(metrics, dict):
        raise ValueError(f"'{path}' must hold a JSON object, got a {_json_type(metrics)}. {_FIX_RUN_FILE}")
    for field in ("accuracy", "macro_f1", "balanced_accuracy"):
        if field in metrics and not _is_number(metrics[field], low=0, high=1):
            _field_error(path, field, "a number in [0, 1]", metrics[field])
    if "log_loss" in metrics and not _is_number(metrics["log_loss"], low=0):
        _field_error(path, "log_loss", "a number >= 0", metrics["log_loss"])
    if "num_images" in metrics and not _is_number(metrics["num_images"], low=0, integer=True):
        _field_error(path, "num_images", "a non-negative integer", metrics["num_images"])
    recalls = metrics.get("recall_per_class", {})
    if not isinstance(recalls, dict):
        _field_error(path, "recall_per_class", "an object of class name: recall", recalls)
    for name, value in recalls.items():
        if not _is_number(value, low=0, high=1):
            _field_error(path, f"recall_per_class.{name}", "a number in [0, 1]", value)
    return metrics


def _check_class_names(path: Path, names, field: str | None = None) -> list[str]:
    where = f"'{path}'" + (f", field '{field}'," if field else "")
    if (
        not isinstance(names, list)
        or not names
        or not all(isinstance(name, str) and name.strip() for name in names)
    ):
        raise ValueError(
            f"{where} must be a list of class names (non-empty strings) in the model's output order, got "
            f"{_short(names)}. {_FIX_RUN_FILE}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"{where} lists a class twice: {names}. {_FIX_RUN_FILE}")
    return names


def _is_number(value, low=None, high=None, integer=False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if not math.isfinite(value):
        return False
    if integer and value != int(value):
        return False
    return (low is None or value >= low) and (high is None or value <= high)


def _field_error(path: Path, field: str, expected: str, value) -> None:
    raise ValueError(f"'{path}', field '{field}': expected {expected}, got {_short(value)}. {_FIX_RUN_FILE}")


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_type(value) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), "null")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= 160 else line[:157] + "..."


def best_run(root: str | os.PathLike, metric: str = "accuracy") -> Path:
    """The run folder in `root` with the highest validation `metric` (from val_metrics.json).

    Selection uses the validation split carved from train, never the test split.
    """
    candidates = []
    for run_dir in find_runs(root):
        value = read_val_metrics(run_dir).get(metric)
        if _is_number(value):
            candidates.append((float(value), run_dir.name, run_dir))
    if not candidates:
        raise FileNotFoundError(
            f"No finished run with a validation '{metric}' in '{root}'. Train one first "
            "(notebooks 03/04, or `python -m fer_utils train --out DIR`)."
        )
    return max(candidates)[2]


def load_run(path: str | os.PathLike, compile: bool = False) -> Run:
    """Load a run folder (or a bare `model.keras` file) for evaluation or prediction.

    A bare `.keras` file is accepted: its class names come from a `class_names.json` beside it,
    else from the package's canonical order when the model has that many outputs. Every file is
    checked; a damaged one raises ValueError naming the file and the field.
    """
    from fer_utils import CLASS_NAMES

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"No run folder or model file at '{path}'. Pass a folder written by "
            "`python -m fer_utils train` (it holds model.keras) or a .keras file."
        )
    if path.is_dir():
        run_dir, model_path = path, path / MODEL_FILE
        if not model_path.is_file():
            raise FileNotFoundError(
                f"'{path}' is a folder but holds no {MODEL_FILE}; it is not a finished run folder. "
                "Train one with `python -m fer_utils train --out DIR`."
            )
    else:
        if path.suffix != ".keras":
            raise ValueError(f"'{path}' is not a .keras model file or a run folder.")
        run_dir, model_path = path.parent, path

    config = read_config(run_dir)
    val_metrics = read_val_metrics(run_dir)
    history = load_history(run_dir)
    class_names = read_class_names(run_dir) or config.get("class_names")
    model = load_keras_model(model_path, compile=compile)
    outputs = int(model.output_shape[-1])
    if class_names is None:
        if outputs != len(CLASS_NAMES):
            raise ValueError(
                f"'{model_path}' has {outputs} outputs and no {CLASS_NAMES_FILE} beside it, so its class "
                f"order is unknown. Write the class names, in output order, to {run_dir / CLASS_NAMES_FILE}."
            )
        class_names = CLASS_NAMES
    elif len(class_names) != outputs:
        raise ValueError(
            f"'{model_path}' has {outputs} outputs but {run_dir / CLASS_NAMES_FILE} (or config.json) names "
            f"{len(class_names)} classes. Write the class names, in output order, to {run_dir / CLASS_NAMES_FILE}."
        )
    return Run(
        path=run_dir,
        model=model,
        config=config,
        history=history,
        class_names=tuple(class_names),
        val_metrics=val_metrics,
    )


def load_keras_model(model_path: str | os.PathLike, compile: bool = False):
    """`keras.models.load_model` in safe mode; a file Keras cannot read raises a ValueError naming it."""
    import keras

    model_path = Path(model_path)
    try:
        # safe_mode stays on (the default): only built-in, registered layers are deserialized.
        return keras.models.load_model(model_path, compile=compile)
    except Exception as error:  # Keras raises many types (OSError, ValueError, TypeError, zip errors).
        raise ValueError(
            f"'{model_path}' is not a readable Keras model ({type(error).__name__}: {_first_line(error)}). "
            "Re-run training to write it again, or point --model to another run."
        ) from None


def _read_json(path: Path, default):
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"'{path}' is not valid JSON ({_first_line(error)}). {_FIX_RUN_FILE}") from None
