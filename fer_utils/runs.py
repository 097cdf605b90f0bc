"""Run folders: the one place a trained model and its provenance live on disk.

A run folder holds everything needed to evaluate or reuse a training run, with no retraining:

    RUN_DIR/
        model.keras         the whole model: raw 48x48x1 pixels (0..255) in, class probabilities out
        class_names.json    the class order of the model's outputs, e.g. ["angry", ..., "neutral"]
        config.json         backbone, weights provenance, image size, phases, hyper-parameters,
                            dataset fingerprint, class names, library versions, device, wall times
        history.csv         one row per epoch: epoch, phase, loss, accuracy, val_loss, val_accuracy, ...
        val_metrics.json    metrics on the validation split carved from train (never the test split)

Every file is written atomically (to a temporary name, then renamed), so a run killed half-way
never leaves a truncated file behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

MODEL_FILE = "model.keras"
CLASS_NAMES_FILE = "class_names.json"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
VAL_METRICS_FILE = "val_metrics.json"


@dataclasses.dataclass
class Run:
    """A loaded run folder."""

    path: Path
    model: Any  # keras.Model
    config: dict
    history: Any  # pandas.DataFrame (may be empty)
    class_names: tuple[str, ...]
    val_metrics: dict

    @property
    def name(self) -> str:
        """A short display name: the config's `name`, else the folder's name."""
        return str(self.config.get("name") or self.path.name)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically: a temporary file in the same folder, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as indented JSON to `path` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value):
    # numpy scalars and arrays, paths and tuples are common in configs and metrics.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def save_model_atomic(model, path: str | os.PathLike) -> Path:
    """Save a Keras model as `.keras` atomically (Keras writes a temporary file, we rename it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp.keras")
    try:
        model.save(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


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


def load_history(path: str | os.PathLike):
    """The history.csv of a run folder as a DataFrame (empty when missing), without loading the model."""
    import pandas as pd

    history_path = Path(path) / HISTORY_FILE
    if history_path.is_file() and history_path.read_text(encoding="utf-8").strip():
        return pd.read_csv(history_path)
    return pd.DataFrame()


def best_run(root: str | os.PathLike, metric: str = "accuracy") -> Path:
    """The run folder in `root` with the highest validation `metric` (from val_metrics.json).

    Selection uses the validation split carved from train, never the test split.
    """
    candidates = []
    for run_dir in find_runs(root):
        value = _read_json(run_dir / VAL_METRICS_FILE, default={}).get(metric)
        if value is not None:
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
    else from the package's canonical order when the model has that many outputs.
    """
    import keras

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

    config = _read_json(run_dir / CONFIG_FILE, default={})
    val_metrics = _read_json(run_dir / VAL_METRICS_FILE, default={})
    history = load_history(run_dir)

    # safe_mode stays on (the default): only built-in, registered layers are deserialized.
    model = keras.models.load_model(model_path, compile=compile)
    class_names = _read_json(run_dir / CLASS_NAMES_FILE, default=None) or config.get("class_names")
    if class_names is None:
        outputs = int(model.output_shape[-1])
        if outputs != len(CLASS_NAMES):
            raise ValueError(
                f"'{model_path}' has {outputs} outputs and no {CLASS_NAMES_FILE} beside it, so its class "
                f"order is unknown. Write the class names, in output order, to {run_dir / CLASS_NAMES_FILE}."
            )
        class_names = CLASS_NAMES
    return Run(
        path=run_dir,
        model=model,
        config=config,
        history=history,
        class_names=tuple(class_names),
        val_metrics=val_metrics,
    )


def _read_json(path: Path, default):
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"'{path}' is not valid JSON ({error}). Delete it or re-run training.") from error
