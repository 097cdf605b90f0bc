"""Atomic file writes, JSON numbers and the cache folder, for run folders, the data cache, figures and reports.

Each file is written to a hidden temporary name (`.tmp`, or `.tmp.keras`) beside it, then renamed over
it, so a reader or a killed process sees the old file or the complete new one. Files get the mode a
plain `open(path, "w")` gives (0666 minus the umask). This module imports nothing from fer_utils.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

TEMPORARY_SUFFIX = ".tmp"
# Overrides where decoded arrays and the demo dataset are cached (see `default_cache_dir`).
CACHE_VARIABLE = "FER_CACHE_DIR"
# The only portable way to read the umask is to set it; it is set straight back.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


def temporary_path(path: str | os.PathLike, suffix: str = TEMPORARY_SUFFIX) -> Path:
    """Create (empty, with the artifact mode) and return a unique hidden temporary file beside `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    os.chmod(temporary, FILE_MODE)
    return Path(temporary)


def atomic_write_path(path: str | os.PathLike, write: Callable[[Path], Any], suffix: str = TEMPORARY_SUFFIX) -> Path:
    """Call `write(temporary)` with a temporary path beside `path` (for writers that want a name, like Keras's
    `model.save`, hence `suffix`), then rename it to `path`; the temporary is deleted when `write` fails."""
    path = Path(path)
    temporary = temporary_path(path, suffix=suffix)
    try:
        write(temporary)
        os.chmod(temporary, FILE_MODE)  # again, in case the writer replaced the file
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None]) -> Path:
    """Call `write(stream)` on a binary stream to a temporary file, flush it to disk, rename it to `path`."""

    def write_and_flush(temporary: Path) -> None:
        with open(temporary, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())

    return atomic_write_path(path, write_and_flush)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically: a temporary file in the same folder, then a rename."""
    return atomic_write(path, lambda stream: stream.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as indented JSON to `path` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def json_number(value):
    """Plain Python numbers for JSON; NaN and infinity become None; anything else is returned as is."""
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return value
    return value if math.isfinite(value) else None


def _json_default(value):
    # numpy scalars and arrays, paths and tuples are common in configs and metrics.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def is_temporary_name(name: str) -> bool:
    """True for the names `temporary_path` makes (hidden, ending in .tmp or .tmp.keras)."""
    return name.startswith(".") and name.endswith((TEMPORARY_SUFFIX, TEMPORARY_SUFFIX + ".keras"))


def remove_stale_temporaries(folder: str | os.PathLike, older_than_s: float = 3600.0) -> int:
    """Delete temporary files in `folder` left by killed writes; return the count. Files younger than
    `older_than_s` may be another process's write in progress (0 when no write can be)."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed, now = 0, time.time()
    for entry in os.scandir(folder):
        if not (entry.is_file(follow_symlinks=False) and is_temporary_name(entry.name)):
            continue
        with contextlib.suppress(OSError):
            if now - entry.stat().st_mtime >= older_than_s:
                os.unlink(entry.path)
                removed += 1
    return removed


def default_cache_dir() -> Path:
    """The cache folder of decoded arrays and the demo dataset: `$FER_CACHE_DIR`, else
    `$XDG_CACHE_HOME/fer_utils`, else `~/.cache/fer_utils`."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fer_utils"
