"""Atomic file writes (a reader or a killed process sees the old file or the complete new one), the output
rule of every command, JSON numbers and the cache folder. This module imports nothing from fer_utils."""

from __future__ import annotations

import contextlib
import errno
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
FILE_MODE = 0o666 & ~_UMASK  # what a plain `open(path, "w")` gives
# In a folder: the files this tool wrote there, the only ones --overwrite may replace (see `check_output`).
MANIFEST_FILE = ".fer-written"
# Files that file browsers drop into any folder they show: a folder holding only these is empty.
LITTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
_WRITE_ERRORS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up", errno.EROFS:
                 "the disk is read-only", errno.EACCES: "permission denied", errno.EPERM: "permission denied"}


class OutputError(ValueError):
    """An output target this tool may not write: someone else's files, a file for a folder, no permission."""


def check_target(path: str | os.PathLike, kind: str = "file") -> Path:
    """`path` if a `kind` ("file" or "folder") can be written there (missing folders are made later); else OutputError."""
    path = Path(path).expanduser()
    if path.exists() and path.is_dir() != (kind == "folder"):
        actual = "folder" if path.is_dir() else "file"
        raise OutputError(f"'{path}' is a {actual}, not a {kind}. Choose a new {kind} name.")
    base = path if path.is_dir() else path.parent
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        raise OutputError(f"'{base}' is a file, so '{path}' cannot be created below it. Choose a path in a folder.")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(f"Cannot write into '{base}' (read-only, or no permission). Choose a folder you can write "
                          "to, or fix its permissions.")
    return path


def check_output(path: str | os.PathLike, kind: str = "file", overwrite: bool = False) -> Path:
    """The output rule of every command, checked before any work: `check_target`, and an existing target is replaced
    only with `overwrite` and when this tool wrote it (every file in it, for a folder), as the manifests say."""
    path = check_target(path, kind)
    if kind == "folder" and path.is_dir():
        # Every entry counts, empty folders, links and temporaries included: only the manifest's are ours.
        manifest = read_manifest(path)
        entries = {item.relative_to(path).as_posix(): item for item in path.rglob("*")
                   if item.name not in LITTER | {MANIFEST_FILE}}
        present = {name for name, item in entries.items()  # an empty folder is ours inside an output of ours
                   if item.is_symlink() or not item.is_dir() or not (manifest or any(item.iterdir()))}
        foreign = sorted(present - manifest)
        if foreign:
            shown = ", ".join(foreign[:4]) + (f" and {len(foreign) - 4} more" if len(foreign) > 4 else "")
            raise OutputError(f"'{path}' holds files fer_utils did not write ({shown}); refusing to write over it. "
                              "Choose a new or empty folder.")
        if not present:
            return path
    elif not path.exists():
        return path
    elif path.name not in read_manifest(path.parent):
        raise OutputError(f"'{path}' exists and was not written by fer_utils; refusing to write over it. "
                          "Choose another file name.")
    if not overwrite:
        raise OutputError(f"'{path}' holds an earlier output of fer_utils. Pass --overwrite to replace it.")
    return path


def read_manifest(folder: str | os.PathLike) -> set[str]:
    """The files this tool wrote in `folder` (paths relative to it), from its manifest; empty when none."""
    try:
        names = json.loads((Path(folder) / MANIFEST_FILE).read_text(encoding="utf-8"))["written"]
        return {name for name in names if isinstance(name, str) and ".." not in Path(name).parts  # never outside
                and not Path(name).is_absolute()}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def record_output(*paths: str | os.PathLike, folder: str | os.PathLike | None = None) -> None:
    """Add `paths` to the manifest of `folder` (default: the first one's folder) before they are written, so
    that a rerun, even of a killed command, may replace them with --overwrite, and nothing else."""
    folder = Path(folder if folder is not None else Path(paths[0]).parent)
    names = {Path(path).relative_to(folder).as_posix() for path in paths}
    if names - (known := read_manifest(folder)):
        atomic_write_json(folder / MANIFEST_FILE, {"written": sorted(known | names)})


def remove_outputs(folder: str | os.PathLike) -> None:
    """Delete the files `folder`'s manifest lists (what this tool wrote there) and nothing else."""
    for name in read_manifest(folder):
        (Path(folder) / name).unlink(missing_ok=True)


def write_error(error: OSError, path: str | os.PathLike, written: int | None = None) -> OSError:
    """`error` as one line naming `path` (and the bytes written) for a full or read-only disk or a permission error."""
    if error.errno not in _WRITE_ERRORS:
        return error
    size = f" after {written:,} bytes" if written else ""
    described = OSError(f"Could not write '{path}'{size}: {_WRITE_ERRORS[error.errno]}. Free some space or choose a "
                        "folder you can write to, then run the command again.")
    described.errno = error.errno
    return described


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
    path, temporary = Path(path), None
    try:
        temporary = temporary_path(path, suffix=suffix)
        write(temporary)
        os.chmod(temporary, FILE_MODE)  # again, in case the writer replaced the file
        os.replace(temporary, path)
    except BaseException as error:
        written = temporary.stat().st_size if temporary is not None and temporary.is_file() else None
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise write_error(error, path, written) from None
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


def remove_stale_temporaries(folder: str | os.PathLike, older_than_s: float = 3600.0) -> None:
    """Delete temporary files in `folder` left by killed writes. Files younger than `older_than_s` may be
    another process's write in progress (0 when no write can be)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    now = time.time()
    for entry in os.scandir(folder):
        if not (entry.is_file(follow_symlinks=False) and is_temporary_name(entry.name)):
            continue
        with contextlib.suppress(OSError):
            if now - entry.stat().st_mtime >= older_than_s:
                os.unlink(entry.path)


def default_cache_dir() -> Path:
    """The cache folder: `$FER_CACHE_DIR`, else `$XDG_CACHE_HOME/fer_utils`, else `~/.cache/fer_utils`."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fer_utils"
