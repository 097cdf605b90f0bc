"""FER2013 data: load (folders or csv), cache, split, summarise and discover.

Every loader returns `Split` objects: uint8 images of shape `(N, 48, 48, 1)`, integer labels and the
class names they index into. The class order is always FER2013's official one,
`fer_utils.CLASS_NAMES` (angry, disgust, fear, happy, sad, surprise, neutral): folders are mapped onto
it by name, `fer2013.csv` rows by their integer `emotion` column.

Decoding is parallel, shows a progress bar, and is cached as `.npz` under a fingerprint of the file
list (names, sizes, modification times), so a changed dataset is never served stale. A cache file
that cannot be read, or holds arrays of the wrong kind, is a miss: decoded again and replaced.

This module imports no TensorFlow or Keras, so it is cheap to import.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fer_utils import CLASS_NAMES, files
from fer_utils.demo import demo_dataset_path

IMAGE_SIZE = 48
SPLIT_NAMES = ("train", "val", "test")
CSV_USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "public_test", "PrivateTest": "private_test"}
# Kaggle's msambare/fer2013 `test/` folder is PublicTest + PrivateTest; its file names say which
# (`PublicTest_123.jpg`, `PrivateTest_456.jpg`). Papers report accuracy on PrivateTest.
TEST_FILE_PREFIXES = {"PublicTest_": "public_test", "PrivateTest_": "private_test"}
TEST_PROTOCOL_SPLITS = ("private_test", "public_test")
CSV_COLUMNS = ("emotion", "pixels", "Usage")
# Added by Windows Explorer and macOS archivers; skipped like hidden files (.DS_Store).
JUNK_DISPLAY = ("Thumbs.db", "desktop.ini", "ehthumbs.db", "__MACOSX")
JUNK_NAMES = frozenset(name.lower() for name in JUNK_DISPLAY)
# Bump when decoding changes, so old cache entries are not reused.
_CACHE_FORMAT = "1"


# ---------------------------------------------------------------------------------------------
# The Split container
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """Labelled faces of one split.

    Attributes:
        images: uint8 array of shape `(N, 48, 48, 1)`, pixel values 0..255.
        labels: int64 array of shape `(N,)`, indices into `class_names`.
        class_names: the class order the labels refer to.
        source: where the images came from (a folder or a csv file and usage), for display.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...] = CLASS_NAMES
    source: str = ""

    def __post_init__(self):
        if self.images.ndim != 4 or self.images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 1):
            raise ValueError(f"Split images must have shape (N, 48, 48, 1), got {self.images.shape}.")
        if self.images.dtype != np.uint8:
            raise ValueError(f"Split images must be uint8, got {self.images.dtype}.")
        if self.labels.shape != (len(self.images),):
            raise ValueError(
                f"Split has {len(self.images)} images but labels of shape {self.labels.shape}."
            )

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices) -> "Split":
        """Return a new Split holding only the rows at `indices` (an index array or boolean mask)."""
        return Split(self.images[indices], self.labels[indices], self.class_names, self.source)

    def counts(self) -> np.ndarray:
        """Number of images per class, in `class_names` order."""
        return np.bincount(self.labels, minlength=len(self.class_names))


@dataclasses.dataclass(frozen=True)
class DatasetLocation:
    """Where `find_dataset` found the data, and how (`source`)."""

    path: Path
    source: str

    @property
    def is_demo(self) -> bool:
        return self.source == "demo"


# ---------------------------------------------------------------------------------------------
# Caching
# ---------------------------------------------------------------------------------------------
def _resolve_cache_dir(cache) -> Path | None:
    """Turn the `cache` argument (True, False/None, or a folder) into a folder or None."""
    if cache is False or cache is None:
        return None
    return files.default_cache_dir() if cache is True else Path(cache)


def _cache_read(cache_dir: Path | None, key: str, keys=("images", "labels"), labels=None) -> dict | None:
    """The cached arrays under `key`, or None on a miss.

    A file that cannot be read or does not hold what was stored (missing arrays, wrong shapes or
    types, labels other than `labels` when given) is a miss too: it is deleted with one warning,
    and the caller decodes again and writes it anew.
    """
    if cache_dir is None:
        return None
    path = cache_dir / f"{key}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in keys}
        _check_cached(arrays, labels)
    except Exception as error:  # zip, zlib, KeyError, OSError, ValueError ...: all mean "damaged"
        warnings.warn(
            f"Ignoring a damaged cache file {path} ({type(error).__name__}: {error}); decoding again and "
            "replacing it.",
            stacklevel=3,
        )
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return arrays


def _check_cached(arrays: dict, labels=None) -> None:
    """Raise ValueError when cached arrays are not what `load_split` / `load_csv` store."""
    images, stored_labels = arrays["images"], arrays["labels"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 1):
        raise ValueError(f"images are {images.dtype} {images.shape}, not uint8 (N, 48, 48, 1)")
    if stored_labels.shape != (len(images),) or not np.issubdtype(stored_labels.dtype, np.integer):
        raise ValueError(f"labels are {stored_labels.dtype} {stored_labels.shape} for {len(images)} images")
    if len(stored_labels) and not 0 <= stored_labels.min() <= stored_labels.max() < len(CLASS_NAMES):
        raise ValueError("labels outside 0..6")
    if labels is not None and not np.array_equal(stored_labels, labels):
        raise ValueError("labels differ from the dataset's files")
    if "usages" in arrays:
        usages = arrays["usages"]
        if usages.shape != (len(images),) or not set(np.unique(usages).tolist()) <= set(CSV_USAGE_TO_SPLIT):
            raise ValueError("usages are not one Usage value per image")


def _cache_write(cache_dir: Path | None, key: str, arrays: dict) -> None:
    """Store arrays atomically (flushed to disk, then renamed); an unwritable cache only costs a warning."""
    if cache_dir is None:
        return
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Temporaries older than an hour are orphans of killed writes; younger ones may be in progress.
        files.remove_stale_temporaries(cache_dir)
        files.atomic_write(cache_dir / f"{key}.npz", lambda stream: np.savez(stream, **arrays))
    except OSError as error:
        warnings.warn(
            f"Could not write the data cache in {cache_dir} ({error}). Loading still works, but the next "
            "load decodes again; set FER_CACHE_DIR to a writable folder to enable caching.",
            stacklevel=3,
        )


def _hash_entries(entries) -> str:
    digest = hashlib.sha256(_CACHE_FORMAT.encode())
    for entry in entries:
        digest.update(repr(entry).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:24]


# ---------------------------------------------------------------------------------------------
# Folder layout
# ---------------------------------------------------------------------------------------------
def _is_junk(name: str) -> bool:
    """Files and folders that operating systems and archivers add (Thumbs.db, __MACOSX, ...)."""
    return name.startswith(".") or name.lower() in JUNK_NAMES


def _visible_children(folder: Path):
    """Entries of `folder`, skipping hidden and system ones (.DS_Store, Thumbs.db, __MACOSX, ...)."""
    return sorted((entry for entry in os.scandir(folder) if not _is_junk(entry.name)), key=lambda e: e.name)


def _count_junk(split_dir: Path) -> int:
    """Number of non-hidden system files and folders skipped in a split folder and its class folders."""
    folders = [split_dir, *(Path(entry.path) for entry in _visible_children(split_dir) if entry.is_dir())]
    return sum(
        1 for folder in folders for entry in os.scandir(folder) if entry.name.lower() in JUNK_NAMES
    )


def _class_folders(split_dir: Path) -> list[tuple[int, os.DirEntry]]:
    """Map the class folders of a split folder onto the canonical class order (case-insensitive)."""
    folders = [entry for entry in _visible_children(split_dir) if entry.is_dir()]
    known = {name: index for index, name in enumerate(CLASS_NAMES)}
    unknown = [entry.name for entry in folders if entry.name.lower() not in known]
    if unknown:
        raise ValueError(
            f"Unknown class folder(s) {unknown} in '{split_dir}'. FER2013 class folders are named "
            f"{list(CLASS_NAMES)}; rename or remove the others."
        )
    mapped = sorted((known[entry.name.lower()], entry) for entry in folders)
    missing = [name for index, name in enumerate(CLASS_NAMES) if index not in {i for i, _ in mapped}]
    if missing:
        raise ValueError(
            f"Missing class folder(s) {missing} in '{split_dir}'. A labelled split needs one folder per "
            f"class: {list(CLASS_NAMES)} (a class with no images still needs its folder)."
        )
    return mapped


def _is_class_folder_layout(folder: Path) -> bool:
    return any(entry.is_dir() and entry.name.lower() in CLASS_NAMES for entry in _visible_children(folder))


def _split_folders(root: Path) -> dict[str, Path]:
    return {
        entry.name.lower(): Path(entry.path)
        for entry in _visible_children(root)
        if entry.is_dir() and entry.name.lower() in SPLIT_NAMES
    }


def _list_split_files(split_dir: Path) -> tuple[list[str], np.ndarray, list[tuple]]:
    """Every image file of a split folder with its label, and the (name, size, mtime) fingerprint rows."""
    paths, labels, entries = [], [], []
    for label, folder in _class_folders(split_dir):
        files = [entry for entry in _visible_children(Path(folder.path)) if entry.is_file()]
        if not files:
            raise ValueError(
                f"Class folder '{folder.path}' is empty. Add its images, or keep it out of the dataset."
            )
        for entry in files:
            stat = entry.stat()
            paths.append(entry.path)
            labels.append(label)
            entries.append((folder.name, entry.name, stat.st_size, stat.st_mtime_ns))
    return paths, np.asarray(labels, dtype=np.int64), entries


def dataset_fingerprint(path: str | os.PathLike) -> str:
    """A short hash of a dataset's file list (relative names, sizes, modification times).

    `path` may be a dataset root, a single split folder or a csv file. Any added, removed, renamed or
    rewritten file changes the fingerprint.
    """
    path = _existing_path(path)
    if path.is_file():
        stat = path.stat()
        return _hash_entries([(path.name, stat.st_size, stat.st_mtime_ns)])
    splits = _split_folders(path)
    if splits:
        return _hash_entries(
            (name, _hash_entries(_list_split_files(folder)[2])) for name, folder in sorted(splits.items())
        )
    return _hash_entries(_list_split_files(path)[2])


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------
def _decode_file(path: str) -> tuple[np.ndarray, bool, bool]:
    """Decode one image file to a 48x48 uint8 grayscale array.

    Returns the array and whether it was converted from colour and whether it was resized.
    """
    import cv2

    raw = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if image is None:
        image = _decode_with_pillow(path)
    converted = image.ndim == 3 and image.shape[2] > 1
    if image.ndim == 3:
        code = {3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}.get(image.shape[2])
        image = cv2.cvtColor(image, code) if code is not None else image[..., 0]
    if image.dtype != np.uint8:
        # 16-bit or float images: scale the full range onto 0..255.
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    resized = image.shape != (IMAGE_SIZE, IMAGE_SIZE)
    if resized:
        image = cv2.resize(image, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
    return image, converted, resized


def _decode_with_pillow(path: str) -> np.ndarray:
    """Fallback for formats OpenCV cannot read; raises a ValueError naming the file when nothing can."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L"))
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ValueError(
            f"Cannot decode '{path}': not a readable image ({type(error).__name__}). Remove or replace the file."
        ) from None


def _decode_files(paths: list[str], progress: bool, description: str) -> tuple[np.ndarray, int, int]:
    """Decode files in parallel threads (OpenCV releases the GIL) with an optional progress bar."""
    from fer_utils import progress as progress_bars

    images = np.empty((len(paths), IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8)
    converted = resized = 0
    chunk = 512
    starts = range(0, len(paths), chunk)

    def decode_chunk(start):
        flags = []
        for offset, path in enumerate(paths[start : start + chunk]):
            image, was_converted, was_resized = _decode_file(path)
            images[start + offset, :, :, 0] = image
            flags.append((was_converted, was_resized))
        return flags

    workers = min(8, (os.cpu_count() or 1) * 2)
    with progress_bars.bar(total=len(paths), desc=description, unit="img", disable=not progress, leave=False) as bar:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for flags in pool.map(decode_chunk, starts):
                converted += sum(flag[0] for flag in flags)
                resized += sum(flag[1] for flag in flags)
                bar.update(len(flags))
    return images, converted, resized


def _warn_conversions(converted: int, resized: int, where, skipped: int = 0) -> None:
    notes = []
    if converted or resized:
        notes.append(
            f"converted {converted} colour image(s) to grayscale and resized {resized} image(s) "
            f"that were not {IMAGE_SIZE}x{IMAGE_SIZE}"
        )
    if skipped:
        notes.append(f"skipped {skipped} system file(s) ({', '.join(JUNK_DISPLAY)})")
    if notes:
        warnings.warn(f"{where}: {'; '.join(notes)}.", stacklevel=3)


def load_split(path: str | os.PathLike, cache=True, progress: bool = True) -> Split:
    """Load one labelled split folder laid out as `DIR/<class>/<image>`.

    Args:
        path: the split folder (for example `fer2013/test`).
        cache: True for the default cache folder, a folder path, or False to neither read nor write it.
        progress: show a progress bar while decoding.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: unknown, missing or empty class folders, or a file that is not an image.
    """
    split_dir = _existing_path(path)
    if not split_dir.is_dir():
        raise ValueError(f"'{split_dir}' is not a folder of class folders (DIR/<class>/<image>).")
    paths, labels, entries = _list_split_files(split_dir)
    key = "split-" + _hash_entries([str(split_dir.resolve()), *entries])
    cache_dir = _resolve_cache_dir(cache)
    stored = _cache_read(cache_dir, key, labels=labels)
    if stored is not None:
        return Split(stored["images"], stored["labels"], CLASS_NAMES, str(split_dir))
    images, converted, resized = _decode_files(paths, progress, f"Decoding {split_dir.name}")
    _warn_conversions(converted, resized, split_dir, _count_junk(split_dir))
    _cache_write(cache_dir, key, {"images": images, "labels": labels})
    return Split(images, labels, CLASS_NAMES, str(split_dir))


# ---------------------------------------------------------------------------------------------
# fer2013.csv
# ---------------------------------------------------------------------------------------------
def load_csv(path: str | os.PathLike, cache=True, progress: bool = True) -> dict[str, Split]:
    """Load the original `fer2013.csv` (`emotion,pixels,Usage`).

    Returns `train` (Training rows), `public_test`, `private_test`, and `test` = PublicTest followed by
    PrivateTest, which matches the Kaggle msambare folder's `test/`. Splits with no rows are left out.

    Raises:
        ValueError: wrong columns, a label outside 0..6, a pixel string that is not 2304 integers in
            0..255, or an unknown Usage value; the message names the row (1-based, header is row 1).
    """
    import pandas as pd

    csv_path = _existing_path(path)
    cache_dir = _resolve_cache_dir(cache)
    stat = csv_path.stat()
    key = "csv-" + _hash_entries([str(csv_path.resolve()), stat.st_size, stat.st_mtime_ns])
    stored = _cache_read(cache_dir, key, keys=("images", "labels", "usages"))
    if stored is None:
        frame = _read_csv_frame(csv_path)
        images, labels, usages = _parse_csv_rows(frame, csv_path, progress)
        stored = {"images": images, "labels": labels, "usages": usages}
        _cache_write(cache_dir, key, stored)
    splits = {}
    for usage, name in CSV_USAGE_TO_SPLIT.items():
        mask = stored["usages"] == usage
        if mask.any():
            splits[name] = Split(stored["images"][mask], stored["labels"][mask], CLASS_NAMES, f"{csv_path}:{usage}")
    tests = [splits[name] for name in ("public_test", "private_test") if name in splits]
    if tests:
        splits["test"] = Split(
            np.concatenate([s.images for s in tests]),
            np.concatenate([s.labels for s in tests]),
            CLASS_NAMES,
            f"{csv_path}:PublicTest+PrivateTest",
        )
    return splits


def _read_csv_frame(csv_path: Path):
    """The csv as a DataFrame of strings with FER2013's columns; ValueError naming the file otherwise."""
    import pandas as pd

    expected = "FER2013's csv is a UTF-8 text file with the header emotion,pixels,Usage and one face per row."
    try:
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ValueError(f"'{csv_path}' is empty. {expected}") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as error:
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        raise ValueError(f"Cannot read '{csv_path}' as a csv ({reason}). {expected}") from None
    frame.columns = [str(column).strip() for column in frame.columns]
    if [c for c in CSV_COLUMNS if c not in frame.columns]:
        shown = [column[:30] for column in frame.columns[:5]] + (["..."] if len(frame.columns) > 5 else [])
        raise ValueError(f"'{csv_path}' has columns {shown}; FER2013's csv needs {list(CSV_COLUMNS)}.")
    if frame.empty:
        raise ValueError(f"'{csv_path}' has a header but no rows. {expected}")
    return frame


def _parse_pixels(pixels: str, csv_path: Path, row: int) -> np.ndarray:
    """The pixel string of one csv row as int64 values; ValueError naming the row for a bad value."""
    tokens = pixels.split()
    try:
        return np.array(tokens, dtype=np.int64)
    except (ValueError, OverflowError):
        bad = next(token for token in tokens if not (token.isascii() and token.lstrip("+-").isdigit()
                                                     and abs(int(token)) < 2**63))
        raise ValueError(
            f"'{csv_path}' row {row}: pixel value '{bad[:20]}' is not an integer in 0..255. "
            "Fix or remove the row."
        ) from None


def _parse_csv_rows(frame, csv_path: Path, progress: bool):
    from fer_utils import progress as progress_bars

    count = len(frame)
    images = np.empty((count, IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8)
    labels = np.empty(count, dtype=np.int64)
    usages = frame["Usage"].str.strip().to_numpy().astype(str)
    rows = zip(frame["emotion"], frame["pixels"], usages)
    for index, (emotion, pixels, usage) in enumerate(progress_bars.bar(iterable=rows, total=count, desc="Parsing csv", disable=not progress, leave=False)):
        row = index + 2  # 1-based, after the header line
        if usage not in CSV_USAGE_TO_SPLIT:
            raise ValueError(
                f"'{csv_path}' row {row}: unknown Usage '{usage}'; expected one of {list(CSV_USAGE_TO_SPLIT)}."
            )
        emotion = emotion.strip()
        if not (emotion.isascii() and emotion.isdigit()) or int(emotion) >= len(CLASS_NAMES):
            raise ValueError(f"'{csv_path}' row {row}: emotion '{emotion[:20]}' is not a label in 0..6.")
        values = _parse_pixels(pixels, csv_path, row)
        if values.size != IMAGE_SIZE * IMAGE_SIZE:
            raise ValueError(
                f"'{csv_path}' row {row}: pixels has {values.size} values; a 48x48 image needs 2304."
            )
        if values.min() < 0 or values.max() > 255:
            raise ValueError(f"'{csv_path}' row {row}: pixel values must lie in 0..255.")
        images[index, :, :, 0] = values.reshape(IMAGE_SIZE, IMAGE_SIZE)
        labels[index] = int(emotion)
    return images, labels, usages


# ---------------------------------------------------------------------------------------------
# Public loaders
# ---------------------------------------------------------------------------------------------
def _existing_path(path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"No dataset at '{path}'. Pass a FER2013 root (train/ and test/ class folders), a single "
            "split folder, or fer2013.csv; or set FER_DATA_DIR."
        )
    return path


def load_dataset(path: str | os.PathLike, cache=True, progress: bool = True) -> dict[str, Split]:
    """Load a dataset from a root with split folders, a single split folder, or `fer2013.csv`.

    - Root `ROOT/{train,val,test}/<class>/*` (any subset of the splits): one Split per split folder.
    - Single split folder `DIR/<class>/*`: one Split, keyed by the folder's name.
    - `fer2013.csv`: see `load_csv`.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: a folder with neither split folders nor class folders, or any bad input below it.
    """
    path = _existing_path(path)
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise ValueError(f"'{path}' is a file but not a .csv; pass fer2013.csv or a dataset folder.")
        return load_csv(path, cache=cache, progress=progress)
    splits = _split_folders(path)
    if splits:
        return {name: load_split(folder, cache=cache, progress=progress) for name, folder in _ordered(splits)}
    if _is_class_folder_layout(path):
        return {path.name: load_split(path, cache=cache, progress=progress)}
    found = [entry.name for entry in _visible_children(path)][:10]
    raise ValueError(
        f"'{path}' holds neither split folders ({', '.join(SPLIT_NAMES)}) nor class folders "
        f"({', '.join(CLASS_NAMES)}); found {found}. Point to the folder that contains train/ and test/."
    )


def _ordered(splits: dict[str, Path]):
    return sorted(splits.items(), key=lambda item: SPLIT_NAMES.index(item[0]))


def test_usages(path: str | os.PathLike) -> np.ndarray | None:
    """Which FER2013 test set each image of `load_labelled(path, "test")` belongs to, in its order.

    An array of "public_test" / "private_test" strings when they can be told apart: `fer2013.csv`
    (its Usage column), or a `test/` folder whose file names all start with `PublicTest_` or
    `PrivateTest_` (Kaggle's msambare copy), both present. None otherwise (renamed files, a test
    folder of another dataset). Only file names are read, nothing is decoded (for a csv, the
    cached parse is reused).
    """
    path = _existing_path(path)
    if path.is_file():
        splits = load_csv(path, progress=False)
        if not all(name in splits for name in ("public_test", "private_test")):
            return None
        return np.array(["public_test"] * len(splits["public_test"]) + ["private_test"] * len(splits["private_test"]))
    test_dir = _split_folders(path).get("test")
    if test_dir is None:
        if not (_is_class_folder_layout(path) and path.name.lower() == "test"):
            return None
        test_dir = path
    paths, _, _ = _list_split_files(test_dir)
    usages = []
    for file_path in paths:
        name = os.path.basename(file_path)
        usage = next((split for prefix, split in TEST_FILE_PREFIXES.items() if name.startswith(prefix)), None)
        if usage is None:
            return None
        usages.append(usage)
    usages = np.array(usages)
    return usages if set(usages) == set(TEST_PROTOCOL_SPLITS) else None


def load_labelled(path: str | os.PathLike, split: str = "test", cache=True, progress: bool = True) -> Split:
    """Load one labelled split: `split` of a dataset root (or csv), or the whole of a single split folder.

    This is what evaluation uses, so a model can be scored on any labelled folder. `"private_test"`
    and `"public_test"` also work for a folder layout whose `test/` file names say which is which
    (see `test_usages`).
    """
    path = _existing_path(path)
    if path.is_dir() and split in TEST_PROTOCOL_SPLITS and split not in _split_folders(path):
        usages = test_usages(path)
        if usages is None:
            raise ValueError(
                f"'{path}' has no '{split}' split: its test/ file names do not all start with "
                f"{' or '.join(TEST_FILE_PREFIXES)}. Use split='test'."
            )
        whole = load_labelled(path, "test", cache=cache, progress=progress)
        part = whole.subset(usages == split)
        return dataclasses.replace(part, source=f"{whole.source}:{split}")
    if path.is_dir():
        splits = _split_folders(path)
        if split in splits:
            # Decode only the split asked for, not the whole root.
            return load_split(splits[split], cache=cache, progress=progress)
        if not splits and _is_class_folder_layout(path):
            return load_split(path, cache=cache, progress=progress)
    dataset = load_dataset(path, cache=cache, progress=progress)
    if split not in dataset:
        raise ValueError(f"'{path}' has no '{split}' split; it has {sorted(dataset)}. Choose one of those.")
    return dataset[split]


# ---------------------------------------------------------------------------------------------
# Splits, weights and summaries
# ---------------------------------------------------------------------------------------------
def train_val_split(split: Split, val_fraction: float = 0.1, seed: int = 42) -> tuple[Split, Split]:
    """Carve a stratified validation split out of a training split.

    Each class contributes `round(val_fraction * count)` images (at least one when it has two or more),
    chosen by a seeded shuffle, so the result is deterministic. The test split is never involved:
    model selection (early stopping, checkpoints) uses this validation split only.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}.")
    rng = np.random.default_rng(seed)
    val_indices = []
    for label in range(len(split.class_names)):
        members = np.flatnonzero(split.labels == label)
        if len(members) == 0:
            continue
        take = int(round(val_fraction * len(members)))
        take = min(max(take, 1 if len(members) >= 2 else 0), len(members) - 1)
        val_indices.append(rng.permutation(members)[:take])
    val_mask = np.zeros(len(split), dtype=bool)
    val_mask[np.concatenate(val_indices) if val_indices else []] = True
    return split.subset(~val_mask), split.subset(val_mask)


def class_weights(labels, num_classes: int = len(CLASS_NAMES)) -> dict[int, float]:
    """Balanced class weights `n / (num_classes * count_c)`; classes with no samples get 1.0."""
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=num_classes)
    present = counts > 0
    weights = np.ones(num_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return {index: float(weight) for index, weight in enumerate(weights)}


def dataset_summary(dataset: dict[str, Split]):
    """Counts per class (rows) and split (columns), with a `total` column and row.

    Returns a pandas DataFrame indexed by class name, in the canonical class order.
    """
    import pandas as pd

    columns = {name: split.counts() for name, split in dataset.items()}
    class_names = next(iter(dataset.values())).class_names if dataset else CLASS_NAMES
    table = pd.DataFrame(columns, index=pd.Index(class_names, name="class"))
    if len(columns) > 1:
        table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    return table.astype(int)


# ---------------------------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------------------------
KAGGLE_INPUT = Path("/kaggle/input")
KAGGLEHUB_HANDLE = "msambare/fer2013/versions/1"


def _holds_fer(folder: Path) -> Path | None:
    """Return the dataset path inside `folder` (itself, or its fer2013.csv), or None."""
    try:
        splits = _split_folders(folder)
        if any(_is_class_folder_layout(split) for split in splits.values()):
            return folder
        if (folder / "fer2013.csv").is_file():
            return folder / "fer2013.csv"
    except OSError:
        return None
    return None


def _search_kaggle_input(kaggle_input: Path) -> Path | None:
    """Look for the layout in /kaggle/input/fer2013 first, then in other mounts up to three levels deep."""
    if not kaggle_input.is_dir():
        return None
    preferred = kaggle_input / "fer2013"
    if preferred.is_dir() and (found := _holds_fer(preferred)):
        return found
    for depth_pattern in ("*", "*/*", "*/*/*"):
        for candidate in sorted(kaggle_input.glob(depth_pattern)):
            if candidate.is_dir() and (found := _holds_fer(candidate)):
                return found
    return None


def _download_with_kagglehub() -> Path | None:
    try:
        import kagglehub
    except ImportError:
        return None
    try:
        path = Path(kagglehub.dataset_download(KAGGLEHUB_HANDLE))
    except Exception as error:  # kagglehub raises many kinds of errors when offline.
        warnings.warn(f"kagglehub could not download {KAGGLEHUB_HANDLE} ({type(error).__name__}).", stacklevel=3)
        return None
    return _holds_fer(path) or path


def find_dataset(path=None, download: bool = True, kaggle_input: Path | None = None) -> DatasetLocation:
    """Find FER2013, in this order, and say where it came from.

    1. `path`, when given (it must exist).
    2. The `FER_DATA_DIR` environment variable.
    3. Kaggle input mounts: `/kaggle/input/fer2013`, then other `/kaggle/input/*` folders with the layout.
    4. `./data/fer2013` in the working directory.
    5. A kagglehub download of `msambare/fer2013` (pinned version), when kagglehub is installed and online.
    6. Otherwise the built-in demo dataset (generated once into the cache), with a loud warning.
    """
    if path is not None:
        return DatasetLocation(_existing_path(path), "argument")
    if os.environ.get("FER_DATA_DIR"):
        return DatasetLocation(_existing_path(os.environ["FER_DATA_DIR"]), "FER_DATA_DIR")
    found = _search_kaggle_input(kaggle_input or KAGGLE_INPUT)
    if found:
        return DatasetLocation(found, "kaggle-input")
    local = Path("data") / "fer2013"
    if local.exists() and (found := _holds_fer(local)):
        return DatasetLocation(found, "local")
    if download and (found := _download_with_kagglehub()):
        return DatasetLocation(found, "kagglehub")
    demo = demo_dataset_path()
    warnings.warn(
        "\n" + "!" * 78 + "\nFER2013 was not found, so the built-in DEMO dataset of drawn faces is used "
        f"({demo}).\nResults on it say nothing about real faces. To use FER2013, set FER_DATA_DIR, put it in "
        "./data/fer2013,\nattach 'msambare/fer2013' on Kaggle, or install kagglehub while online.\n" + "!" * 78,
        stacklevel=2,
    )
    return DatasetLocation(demo, "demo")

