"""Run folders: where a trained model and its provenance live on disk (loaded by `loading.load_model`).
Every file read back is checked; a damaged one raises a ValueError naming the file and the field."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from fer_utils import files

MODEL_FILE = "model.keras"  # the whole model: raw 48x48x1 pixels (0..255) in, class probabilities out
CLASS_NAMES_FILE = "class_names.json"  # the class order of the model's outputs
CONFIG_FILE = "config.json"  # backbone, weights, image size, data, phases, hyper-parameters, versions, times
HISTORY_FILE = "history.csv"  # one row per epoch: epoch, phase, loss, accuracy, val_loss, val_accuracy, ...
VAL_METRICS_FILE = "val_metrics.json"  # on the validation split carved from train (never the test split)
ARTIFACT_FILES = (MODEL_FILE, CLASS_NAMES_FILE, CONFIG_FILE, HISTORY_FILE, VAL_METRICS_FILE)
RUN_MARKER_FILE = ".fer-run"  # training writes only into empty folders or folders with this marker
RUN_FORMAT = 1
# The numeric columns training writes to history.csv, with the values they may hold.
HISTORY_RANGES = {
    "epoch": (1, math.inf), "loss": (0, math.inf), "val_loss": (0, math.inf), "accuracy": (0, 1),
    "val_accuracy": (0, 1), "learning_rate": (0, math.inf), "seconds": (0, math.inf),
}
_FIX_RUN_FILE = "Restore the file from the run that wrote it, or re-run training into a new folder."


@dataclasses.dataclass
class Run:
    """A loaded model with what is known about it; `path` is its run folder (None in memory or builtin)."""

    path: Path | None
    model: Any  # keras.Model
    config: dict
    history: Any  # pandas.DataFrame (may be empty) or None
    class_names: tuple[str, ...]
    val_metrics: dict

    @property
    def name(self) -> str:
        """A short display name: the config's `name`, else the folder's (or the model's) name."""
        if self.config.get("name"):
            return str(self.config["name"])
        return self.path.name if self.path is not None else str(getattr(self.model, "name", "model"))


def save_run(run_dir, model, config: dict, history=None, val_metrics: dict | None = None) -> Path:
    """Write a complete run folder (`config` must hold `class_names`; `history` a DataFrame or None)."""
    import pandas as pd

    run_dir = Path(run_dir)
    if "class_names" not in config:
        raise ValueError("save_run: config must contain 'class_names' (the order of the model's outputs).")
    run_dir.mkdir(parents=True, exist_ok=True)
    # Keras insists on the .keras suffix, hence the temporary's `.tmp.keras` ending.
    files.atomic_write_path(run_dir / MODEL_FILE, model.save, suffix=files.TEMPORARY_SUFFIX + ".keras")
    files.atomic_write_json(run_dir / CLASS_NAMES_FILE, list(config["class_names"]))
    files.atomic_write_json(run_dir / CONFIG_FILE, config)
    files.atomic_write_text(run_dir / HISTORY_FILE, (history if history is not None else pd.DataFrame()).to_csv(index=False))
    files.atomic_write_json(run_dir / VAL_METRICS_FILE, val_metrics or {})
    return run_dir


def is_run_dir(path: str | os.PathLike) -> bool:
    """True when `path` is a folder holding a `model.keras`."""
    return (Path(path) / MODEL_FILE).is_file()


def find_runs(root: str | os.PathLike) -> list[Path]:
    """The run folders directly inside `root`, sorted by name ([] when there are none)."""
    root = Path(root)
    return sorted(child for child in root.iterdir() if is_run_dir(child)) if root.is_dir() else []


def best_run(root: str | os.PathLike, metric: str = "accuracy") -> Path:
    """The run folder in `root` with the highest validation `metric` (never a test-split figure)."""
    candidates = []
    for run_dir in find_runs(root):
        value = read_val_metrics(run_dir).get(metric)
        if _is_number(value):
            candidates.append((float(value), run_dir.name, run_dir))
    if not candidates:
        raise FileNotFoundError(f"No finished run with a validation '{metric}' in '{root}'. Train one first "
                                "(notebooks 03/04, or `python -m fer_utils train --out DIR`).")
    return max(candidates)[2]


def check_run_folder(run_dir: str | os.PathLike, recognise=None) -> Path:
    """`run_dir` if it is missing, empty or a run folder of ours (marker, or `recognise(run_dir)`); else OutputError."""
    run_dir = files.check_target(run_dir, "folder")
    if (run_dir / RUN_MARKER_FILE).is_file() or not run_dir.is_dir():
        return run_dir
    present = sorted(entry.name for entry in run_dir.iterdir() if entry.name not in files.LITTER)
    if present and not (recognise and recognise(run_dir)):
        shown = ", ".join(present[:5]) + (f" and {len(present) - 5} more" if len(present) > 5 else "")
        raise files.OutputError(
            f"'{run_dir}' is not empty and is not a fer_utils run folder (it has no {RUN_MARKER_FILE} marker); "
            f"it holds {shown}. Pass a new or empty folder as --out; --overwrite never deletes files the "
            "project did not write."
        )
    return run_dir


def claim_run_folder(run_dir: str | os.PathLike, recognise=None) -> Path:
    """`check_run_folder`, then create the folder and its marker if needed (nothing else is touched)."""
    run_dir = check_run_folder(run_dir, recognise)
    if not (run_dir / RUN_MARKER_FILE).is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        files.atomic_write_json(run_dir / RUN_MARKER_FILE, {"fer_utils_run_folder": RUN_FORMAT})
    return run_dir


def remove_artifacts(run_dir: str | os.PathLike) -> None:
    """Delete the files `save_run` writes, and temporaries of killed writes; nothing else."""
    run_dir = Path(run_dir)
    for name in ARTIFACT_FILES:
        (run_dir / name).unlink(missing_ok=True)
    files.remove_stale_temporaries(run_dir, older_than_s=0)


def load_history(run_dir: str | os.PathLike):
    """history.csv of a run folder as a DataFrame (empty when missing), its numeric columns checked."""
    import pandas as pd

    path = Path(run_dir) / HISTORY_FILE
    try:
        if not path.is_file() or not path.read_text(encoding="utf-8").strip():
            return pd.DataFrame()
        history = pd.read_csv(path)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ValueError(f"'{path}' is not a readable csv ({first_line(error)}). {_FIX_RUN_FILE}") from None
    for column, (low, high) in HISTORY_RANGES.items():
        if column not in history.columns:
            continue
        values = pd.to_numeric(history[column], errors="coerce")
        for row, (raw, value) in enumerate(zip(history[column], values), start=2):
            # An empty cell is a value that was not measured.
            if not pd.isna(raw) and (pd.isna(value) or not low <= value <= high):
                raise ValueError(f"'{path}' row {row}, column '{column}': {raw!r} is not a number in "
                                 f"[{low:g}, {high:g}]. {_FIX_RUN_FILE}")
    return history


def read_config(run_dir: str | os.PathLike) -> dict:
    """config.json of a run folder ({} when missing), checked field by field."""
    path = Path(run_dir) / CONFIG_FILE
    config = _read_json_object(path, default={})
    if config.get("name") is not None and not isinstance(config["name"], str):
        _field_error(path, "name", "a string", config["name"])
    if "class_names" in config:
        _check_class_names(path, config["class_names"], field="class_names")
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    counts = {field: config.get(field) for field in ("n_params", "img_size", "train_size", "val_size")}
    counts.update({f"data.{field}": data.get(field) for field in ("train_size", "val_size")})
    for field, value in counts.items():
        if value is not None and not _is_number(value, low=0, integer=True):
            _field_error(path, field, "a non-negative integer", value)
    wall_time = config.get("wall_time_s")
    if wall_time is not None:
        for key, value in wall_time.items() if isinstance(wall_time, dict) else [("", wall_time)]:
            if not _is_number(value, low=0):
                _field_error(path, "wall_time_s" + (f".{key}" if key else ""), "a number of seconds >= 0", value)
    return config


def data_provenance(config: dict) -> dict:
    """config.json's `data` record (path, source, fingerprint, validation, sizes); {} when it has none."""
    return dict(config["data"]) if isinstance(config.get("data"), dict) else {}


def read_class_names(run_dir: str | os.PathLike) -> list[str] | None:
    """class_names.json of a run folder (None when missing), checked."""
    path = Path(run_dir) / CLASS_NAMES_FILE
    names = _read_json(path, default=None)
    return None if names is None else _check_class_names(path, names)


def read_val_metrics(run_dir: str | os.PathLike) -> dict:
    """val_metrics.json of a run folder ({} when missing), checked."""
    path = Path(run_dir) / VAL_METRICS_FILE
    metrics = _read_json_object(path, default={})
    checks = [(field, "a number in [0, 1]", dict(low=0, high=1)) for field in ("accuracy", "macro_f1", "balanced_accuracy")]
    checks += [("log_loss", "a number >= 0", dict(low=0)), ("num_images", "a non-negative integer", dict(low=0, integer=True))]
    for field, expected, bounds in checks:
        if field in metrics and not _is_number(metrics[field], **bounds):
            _field_error(path, field, expected, metrics[field])
    recalls = metrics.get("recall_per_class", {})
    if not isinstance(recalls, dict):
        _field_error(path, "recall_per_class", "an object of class name: recall", recalls)
    for name, value in recalls.items():
        if not _is_number(value, low=0, high=1):
            _field_error(path, f"recall_per_class.{name}", "a number in [0, 1]", value)
    return metrics


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (at most 160 characters), for one-line errors."""
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else type(error).__name__
    return line if len(line) <= 160 else line[:157] + "..."


def _check_class_names(path: Path, names, field: str | None = None) -> list[str]:
    where = f"'{path}'" + (f", field '{field}'," if field else "")
    if not isinstance(names, list) or not names or not all(isinstance(name, str) and name.strip() for name in names):
        raise ValueError(f"{where} must be a list of class names (non-empty strings) in the model's output order, "
                         f"got {_short(names)}. {_FIX_RUN_FILE}")
    if len(set(names)) != len(names):
        raise ValueError(f"{where} lists a class twice: {names}. {_FIX_RUN_FILE}")
    return names


def _is_number(value, low=None, high=None, integer=False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    if integer and value != int(value):
        return False
    return (low is None or value >= low) and (high is None or value <= high)


def _field_error(path: Path, field: str, expected: str, value) -> None:
    raise ValueError(f"'{path}', field '{field}': expected {expected}, got {_short(value)}. {_FIX_RUN_FILE}")


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_json(path: Path, default):
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"'{path}' is not valid JSON ({first_line(error)}). {_FIX_RUN_FILE}") from None


def _read_json_object(path: Path, default) -> dict:
    value = _read_json(path, default)
    if not isinstance(value, dict):
        kind = {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), "null")
        raise ValueError(f"'{path}' must hold a JSON object, got a {kind}. {_FIX_RUN_FILE}")
    return value
