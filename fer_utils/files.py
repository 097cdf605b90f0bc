"""Atomic file writes and the cache folder, shared by run folders, the data cache, figures and reports.

Every artifact is written to a unique temporary name in its destination folder, flushed to disk,
then renamed over the destination, so a reader (or a process killed half-way) sees either the old
file or the complete new one. Temporary names are hidden and end in `.tmp` (`.tmp.keras` for Keras
models); `remove_stale_temporaries` clears the ones a killed write left behind.

Permission policy: an artifact gets the mode an ordinary `open(path, "w")` would give it, 0666
minus the umask (0644 usually), whichever way it was written. Run folders and caches are shared
between users of a machine, like any other output file.

This module imports nothing from fer_utils, so every other module may use it.
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


def _umask() -> int:
    # The only portable way to read the umask is to set it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()


def temporary_path(path: str | os.PathLike, suffix: str = TEMPORARY_SUFFIX) -> Path:
    """Create (empty, with the artifact mode) and return a unique hidden temporary file beside `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    os.chmod(temporary, FILE_MODE)
    return Path(temporary)


def atomic_write_path(
    path: str | os.PathLike, write: Callable[[Path], Any], suffix: str = TEMPORARY_SUFFIX
) -> Path:
    """Call `write(temporary)` with a temporary file's path beside `path`, then rename it to `path`.

    For writers that insist on a file name rather than a stream (Keras' `model.save` wants a name
    ending in `.keras`, hence `suffix`). The temporary gets the artifact mode again afterwards, in
    case the writer replaced the file; it is deleted when `write` fails.
    """
    path = Path(path)
    temporary = temporary_path(path, suffix=suffix)
    try:
        write(temporary)
        os.chmod(temporary, FILE_MODE)
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
    if value is None:
        return None
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
    """Delete temporary files in `folder` older than `older_than_s` (left by killed writes); return the count.

    The age limit keeps a write that another process has in progress; pass 0 when the caller holds
    the folder's lock, so that no write can be in progress.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    now = time.time()
    for entry in os.scandir(folder):
        if not (entry.is_file(follow_symlinks=False) and is_temporary_name(entry.name)):
            continue
        with contextlib.suppress(OSError):
            if now - entry.stat().st_mtime >= older_than_s:
                os.unlink(entry.path)
                removed += 1
    return removed


def default_cache_dir() -> Path:
    """The cache folder of decoded arrays and the demo dataset.

    `$FER_CACHE_DIR`, else `$XDG_CACHE_HOME/fer_utils`, else `~/.cache/fer_utils`.
    """
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fer_utils"
