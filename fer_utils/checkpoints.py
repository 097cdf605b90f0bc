"""Resume state of a training run: RUN_DIR/backup, its state.json and the checkpoint files.

Layout of an unfinished (or finished, not yet cleaned) run folder:

    RUN_DIR/backup/state.json                 config, training-data fingerprint, finished phases
    RUN_DIR/backup/<phase>/state.json         the phase's epochs done, history, early stopping
    RUN_DIR/backup/<phase>/epochNNNN.weights.h5   weights + optimizer state of the last epoch
    RUN_DIR/backup/<phase>/best-epochNNNN.npz     the best epoch's weights
    RUN_DIR/backup/<phase>/final.npz              the phase's selected weights once it finished

Every file is written under a temporary name and renamed, so a kill at any moment leaves files
that are complete. Only files with these names are ever deleted here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
from pathlib import Path

import numpy as np

from fer_utils import files, runs
from fer_utils.training_config import PHASES, TrainConfig

BACKUP_DIR = "backup"
STATE_FILE = "state.json"
FINAL_WEIGHTS_FILE = "final.npz"
_CHECKPOINT_NAME = re.compile(r"state\.json|final\.npz|epoch\d{4}\.weights\.h5|best-epoch\d{4}\.npz")


def open_run_state(run_dir: Path, config: TrainConfig, data_fingerprint: str, overwrite: bool) -> dict:
    """Read RUN_DIR/backup/state.json (or start a new state, not yet written), refusing to mix runs.

    A stored state must have the same settings (the time budget may change) and the same training
    data (`data_fingerprint`, a hash of the train and validation images and labels).
    """
    path = run_dir / BACKUP_DIR / STATE_FILE
    if overwrite:
        runs.remove_artifacts(run_dir)
        remove_checkpoints(run_dir / BACKUP_DIR)
    # Any temporary here is an orphan of a killed write: this process holds the folder's lock.
    for folder in (run_dir, run_dir / BACKUP_DIR, *(run_dir / BACKUP_DIR / phase for phase in PHASES)):
        files.remove_stale_temporaries(folder, older_than_s=0)
    current = config.to_dict()
    if path.is_file():
        state = read_state(path)
        _check_same_run(run_dir, state, current, data_fingerprint)
        state["config"] = current
        state["data_fingerprint"] = data_fingerprint
        return state
    if runs.is_run_dir(run_dir):
        raise ValueError(
            f"'{run_dir}' already holds a model.keras from another run. Use a new --out folder, or pass "
            "--overwrite to replace it."
        )
    return {"config": current, "data_fingerprint": data_fingerprint, "completed": {}, "complete": False}


def _check_same_run(run_dir: Path, state: dict, current: dict, data_fingerprint: str) -> None:
    """Raise ValueError when the stored run has other settings (besides the time budget) or other data."""
    stored = dict(state.get("config", {}))
    if isinstance(stored.get("class_weights"), bool):  # written when class weighting was a switch
        stored["class_weights"] = "balanced" if stored["class_weights"] else "none"
    # A setting added after the stored run started: it ran with that setting's default.
    for field in dataclasses.fields(TrainConfig):
        if field.name not in stored and field.default is not dataclasses.MISSING:
            stored[field.name] = field.default
    differences = sorted(
        key for key in set(stored) | set(current)
        if key != "max_minutes" and stored.get(key) != current.get(key)
    )
    if differences:
        raise ValueError(
            f"'{run_dir}' holds a run with different settings ({', '.join(differences)}). "
            "Use a new --out folder, or pass --overwrite to discard the old run."
        )
    stored_fingerprint = state.get("data_fingerprint")
    if stored_fingerprint is not None and stored_fingerprint != data_fingerprint:
        raise ValueError(
            f"'{run_dir}' holds a run trained on other data (training-data fingerprint {stored_fingerprint} "
            f"there, {data_fingerprint} now). Pass the same --data to resume it, use a new --out folder, "
            "or pass --overwrite to discard the old run."
        )


def read_state(path: Path) -> dict:
    """A state.json as a dict; a damaged or hand-edited one raises ValueError saying what to do."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        state = None
    if not isinstance(state, dict) or not isinstance(state.get("completed", {}), dict):
        # Resuming from it would be a guess.
        raise ValueError(
            f"'{path}' is not a readable training state. Pass --overwrite to discard the interrupted run, "
            "or use a new --out folder."
        )
    return state


def write_state(path: Path, state: dict) -> None:
    """Write a state.json atomically."""
    files.atomic_write_json(path, state)


def holds_training_state(run_dir: Path) -> bool:
    """True for a run folder written before run folders had a marker: its backup/state.json is ours."""
    try:
        state = json.loads((run_dir / BACKUP_DIR / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and {"config", "completed"} <= set(state)


def save_arrays(path: Path, arrays) -> None:
    """Save a list of arrays atomically as an .npz (keys arr_0, arr_1, ... in order)."""
    buffer = io.BytesIO()
    np.savez(buffer, *[np.asarray(array) for array in arrays])
    files.atomic_write_bytes(path, buffer.getvalue())


def load_arrays(path: Path) -> list[np.ndarray]:
    """The arrays `save_arrays` wrote; a damaged file raises ValueError saying how to start over."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            return [stored[f"arr_{index}"] for index in range(len(stored.files))]
    except Exception as error:  # zip, zlib, OSError, KeyError ...: all mean "damaged or missing"
        raise damaged_checkpoint(path, error) from None


def damaged_checkpoint(path: Path, error: BaseException) -> ValueError:
    """The error for a checkpoint under RUN_DIR/backup/<phase>/ that cannot be read."""
    run_dir = path.parent.parent.parent
    return ValueError(
        f"The checkpoint '{path}' cannot be read ({type(error).__name__}), so the interrupted run in "
        f"'{run_dir}' cannot resume. Pass --overwrite to start it over, or use a new --out folder."
    )


def is_checkpoint_name(name: str) -> bool:
    """True for the files this module writes under RUN_DIR/backup (and temporaries of killed writes)."""
    return bool(_CHECKPOINT_NAME.fullmatch(name)) or files.is_temporary_name(name)


def remove_unreferenced(folder: Path, keep: set) -> None:
    """Delete the checkpoint files in `folder` that are not in `keep`."""
    for path in folder.iterdir():
        if path.is_file() and path.name not in keep and is_checkpoint_name(path.name):
            path.unlink(missing_ok=True)


def remove_checkpoints(folder: Path) -> None:
    """Delete the checkpoint files under `folder` (backup/ or one phase's folder), then the folders
    that are left empty. Files the project did not write stay where they are."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.is_dir() and entry.name in PHASES:
            remove_checkpoints(entry)
        elif entry.is_file() and is_checkpoint_name(entry.name):
            entry.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()  # only succeeds when nothing else is in it
