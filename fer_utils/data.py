"""FER2013 data: load (msambare folders or fer2013.csv) as `Split`s, cache, split, summarise and discover.
No TensorFlow or Keras is imported here."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
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
# Kaggle's msambare `test/` folder is PublicTest + PrivateTest; its file names say which.
TEST_FILE_PREFIXES = {"PublicTest_": "public_test", "PrivateTest_": "private_test"}
TEST_PROTOCOL_SPLITS = ("private_test", "public_test")
CSV_COLUMNS = ("emotion", "pixels", "Usage")
# Added by Windows Explorer and macOS archivers; skipped like hidden files (.DS_Store).
JUNK_NAMES = ("thumbs.db", "desktop.ini", "ehthumbs.db", "__macosx")
KAGGLE_INPUT = Path("/kaggle/input")
KAGGLEHUB_HANDLE = "msambare/fer2013/versions/1"
_CACHE_FORMAT = "1"  # bump when decoding changes, so old cache entries are not reused
MAX_PIXELS = 50_000_000  # per photo, video frame or dataset image: a 50-megapixel phone photo (check_image_header)


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """Labelled faces: uint8 `images` (N, 48, 48, 1), int64 `labels` (N,) into `class_names`, their `source`."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...] = CLASS_NAMES
    source: str = ""

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 1):
            raise ValueError(f"Split images must be uint8 (N, 48, 48, 1), got {self.images.dtype} {self.images.shape}.")
        if self.labels.shape != (len(self.images),) or not np.issubdtype(self.labels.dtype, np.integer):
            raise ValueError(f"Split has {len(self.images)} images but labels {self.labels.dtype} {self.labels.shape}.")
        if len(self.labels) and not 0 <= self.labels.min() <= self.labels.max() < len(self.class_names):
            raise ValueError(f"Split labels must lie in 0..{len(self.class_names) - 1}.")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices) -> "Split":
        """The rows at `indices` (an index array or boolean mask), as a new Split."""
        return Split(self.images[indices], self.labels[indices], self.class_names, self.source)


@dataclasses.dataclass(frozen=True)
class DatasetLocation:
    """Where `find_dataset` found the data (`path`), and how (`source`)."""

    path: Path
    source: str

    @property
    def is_demo(self) -> bool:
        return self.source == "demo"


# --- Cache ----------------------------------------------------------------------------------------
def _cached(cache, key: str, decode, keys=("images", "labels"), labels=None) -> dict:
    """The arrays cached under `key`, else `decode()`'s, stored for the next load. A damaged file is a miss
    (warned, decoded again, replaced); an unwritable cache costs a warning, not the load."""
    folder = None if cache is False or cache is None else files.default_cache_dir() if cache is True else Path(cache)
    path = folder / f"{key}.npz" if folder is not None else None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in keys}
            Split(arrays["images"], arrays["labels"])  # checks shapes, types and the label range
            if labels is not None and not np.array_equal(arrays["labels"], labels):
                raise ValueError("labels differ from the dataset's files")
            if "usages" in arrays and arrays["usages"].shape != arrays["labels"].shape:
                raise ValueError("usages are not one Usage value per image")
            return arrays
        except Exception as error:  # zip, zlib, KeyError, OSError, ValueError ...: all mean "damaged"
            warnings.warn(f"Ignoring a damaged cache file {path} ({type(error).__name__}: {error}); decoding "
                          "again and replacing it.", stacklevel=3)
            with contextlib.suppress(OSError):
                path.unlink()
    arrays = decode()
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            files.remove_stale_temporaries(folder)  # orphans of killed writes
            files.atomic_write(path, lambda stream: np.savez(stream, **arrays))
        except OSError as error:
            warnings.warn(f"Could not write the data cache in {folder} ({error}). Loading still works, but the next "
                          "load decodes again; set FER_CACHE_DIR to a writable folder to enable caching.", stacklevel=3)
    return arrays


# Cache keys hash the file list (names, sizes, modification times): a changed dataset is never served stale.
def _hash(entries) -> str:
    digest = hashlib.sha256(_CACHE_FORMAT.encode())
    for entry in entries:
        digest.update(repr(entry).encode() + b"\0")
    return digest.hexdigest()[:24]


# --- Folder layout --------------------------------------------------------------------------------
def _children(folder: Path, skip_junk: bool = True) -> list[os.DirEntry]:
    """Entries of `folder` by name, without hidden ones and (unless asked) system ones (Thumbs.db ...)."""
    return sorted((entry for entry in os.scandir(folder) if not entry.name.startswith(".")
                   and not (skip_junk and entry.name.lower() in JUNK_NAMES)), key=lambda entry: entry.name)


def _by_lower_name(entries, folder: Path, what: str) -> dict[str, os.DirEntry]:
    found = {}
    for entry in entries:  # two names that differ only in case: one class (or split) in two folders
        if (twin := found.setdefault(entry.name.lower(), entry)) is not entry:
            raise ValueError(f"'{folder}' holds both '{twin.name}/' and '{entry.name}/', one {what} spelled twice; "
                             "move the images of one into the other and remove it.")
    return found


def _is_class_folder_layout(folder: Path) -> bool:
    return any(entry.is_dir() and entry.name.lower() in CLASS_NAMES for entry in _children(folder))


def _split_folders(root: Path) -> dict[str, Path]:
    found = _by_lower_name([e for e in _children(root) if e.is_dir() and e.name.lower() in SPLIT_NAMES], root, "split")
    return {name: Path(found[name].path) for name in SPLIT_NAMES if name in found}


def _list_split_files(split_dir: Path) -> tuple[list[str], np.ndarray, list[tuple]]:
    """The image files of a split folder, their labels, and (class, name, size, mtime) fingerprint rows."""
    folders = [entry for entry in _children(split_dir) if entry.is_dir()]
    unknown = [entry.name for entry in folders if entry.name.lower() not in CLASS_NAMES]
    if unknown:
        raise ValueError(f"Unknown class folder(s) {unknown} in '{split_dir}'. FER2013 class folders are named "
                         f"{list(CLASS_NAMES)}; rename or remove the others.")
    by_label = {CLASS_NAMES.index(name): entry for name, entry in _by_lower_name(folders, split_dir, "class").items()}
    missing = [name for label, name in enumerate(CLASS_NAMES) if label not in by_label]
    if missing:
        raise ValueError(f"Missing class folder(s) {missing} in '{split_dir}'. A labelled split needs one folder "
                         f"per class: {list(CLASS_NAMES)} (a class with no images still needs its folder).")
    paths, labels, entries = [], [], []
    for label, folder in sorted(by_label.items()):
        images = [entry for entry in _children(Path(folder.path)) if entry.is_file()]
        if not images:
            raise ValueError(f"Class folder '{folder.path}' is empty. Add its images, or keep it out of the dataset.")
        for entry in images:
            stat = entry.stat()
            paths.append(entry.path)
            labels.append(label)
            entries.append((folder.name, entry.name, stat.st_size, stat.st_mtime_ns))
    return paths, np.asarray(labels, dtype=np.int64), entries


def dataset_fingerprint(path: str | os.PathLike) -> str:
    """A short hash of the file list (names, sizes, modification times) of a root, a split folder or a csv."""
    path = _existing_path(path)
    if path.is_file():
        stat = path.stat()
        return _hash([(path.name, stat.st_size, stat.st_mtime_ns)])
    splits = _split_folders(path)
    if splits:
        return _hash((name, _hash(_list_split_files(folder)[2])) for name, folder in sorted(splits.items()))
    return _hash(_list_split_files(path)[2])


# --- Decoding -------------------------------------------------------------------------------------
def check_image_header(raw, where) -> tuple[int, int] | None:
    """(width, height) from an image's header (`raw`: the file's bytes), before decoding it, or None when unreadable; a
    ValueError naming `where` when over `MAX_PIXELS` (a 400 KB PNG can claim 20000x20000 and unpack to gigabytes)."""
    from PIL import Image

    try:  # Pillow reads the header only
        with warnings.catch_warnings(action="error", category=Image.DecompressionBombWarning):
            size = Image.open(io.BytesIO(raw)).size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # over Pillow's own limit (~89 megapixels)
        size = None
    except Exception:  # unreadable (Pillow raises many types): the caller's decoder is not tried, and says so
        return None
    if size is None or size[0] * size[1] > MAX_PIXELS:
        shown = f"{size[0]}x{size[1]} pixels" if size else f"over {Image.MAX_IMAGE_PIXELS // 10**6} megapixels"
        raise ValueError(f"'{where}' is {shown}; fer_utils decodes at most {MAX_PIXELS // 10**6} megapixels (more can "
                         "take gigabytes of memory), so downscale it (e.g. to 4000 pixels wide) or use another file.")
    return size


def _decode_file(path: str) -> tuple[np.ndarray, bool, bool]:
    """One image file as a 48x48 uint8 gray array, and whether it was converted from colour, and resized."""
    import cv2

    raw = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if check_image_header(raw, path) else None
    if image is None:
        raise ValueError(f"Cannot decode '{path}': not a readable image. Remove or replace the file.")
    converted = image.ndim == 3 and image.shape[2] > 1
    if image.ndim == 3:
        code = {3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}.get(image.shape[2])
        image = cv2.cvtColor(image, code) if code is not None else image[..., 0]
    if image.dtype != np.uint8:  # 16-bit or float images: their full range onto 0..255
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    resized = image.shape != (IMAGE_SIZE, IMAGE_SIZE)
    if resized:
        image = cv2.resize(image, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
    return image, converted, resized


def _decode_split(split_dir: Path, paths: list[str], labels: np.ndarray, progress: bool) -> dict:
    """Decode a split's files in threads (OpenCV releases the GIL); warn once about what was changed or skipped."""
    from fer_utils import progress as progress_bars

    images = np.empty((len(paths), IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8)
    changed = np.zeros((len(paths), 2), dtype=bool)  # converted from colour, resized
    chunk = 512

    def decode_chunk(start):
        for index in range(start, min(start + chunk, len(paths))):
            images[index, :, :, 0], changed[index, 0], changed[index, 1] = _decode_file(paths[index])
        return min(chunk, len(paths) - start)

    with progress_bars.bar(total=len(paths), desc=f"Decoding {split_dir.name}", unit="img", disable=not progress,
                           leave=False) as bar:
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
            for done in pool.map(decode_chunk, range(0, len(paths), chunk)):
                bar.update(done)
    converted, resized = changed.sum(axis=0)
    folders = [split_dir, *(Path(entry.path) for entry in _children(split_dir) if entry.is_dir())]
    skipped = sum(entry.name.lower() in JUNK_NAMES for folder in folders for entry in _children(folder, False))
    notes = [f"converted {converted} colour image(s) to grayscale and resized {resized} image(s) that were not "
             f"{IMAGE_SIZE}x{IMAGE_SIZE}"] if converted or resized else []
    notes += [f"skipped {skipped} system file(s) (Thumbs.db, desktop.ini, __MACOSX)"] if skipped else []
    if notes:
        warnings.warn(f"{split_dir}: {'; '.join(notes)}.", stacklevel=5)
    return {"images": images, "labels": labels}


def load_split(path: str | os.PathLike, cache=True, progress: bool = True) -> Split:
    """Load one labelled split folder `DIR/<class>/<image>`. `cache`: True (the default folder), a folder, or False."""
    split_dir = _existing_path(path)
    if not split_dir.is_dir():
        raise ValueError(f"'{split_dir}' is not a folder of class folders (DIR/<class>/<image>).")
    paths, labels, entries = _list_split_files(split_dir)
    arrays = _cached(cache, "split-" + _hash([str(split_dir.resolve()), *entries]),
                     lambda: _decode_split(split_dir, paths, labels, progress), labels=labels)
    return Split(arrays["images"], arrays["labels"], CLASS_NAMES, str(split_dir))


# --- fer2013.csv ----------------------------------------------------------------------------------
def load_csv(path: str | os.PathLike, cache=True, progress: bool = True) -> dict[str, Split]:
    """Load `fer2013.csv` as `train`, `public_test`, `private_test` and `test` (both), each when it has rows."""
    csv_path = _existing_path(path)
    stat = csv_path.stat()
    key = "csv-" + _hash([str(csv_path.resolve()), stat.st_size, stat.st_mtime_ns])
    stored = _cached(cache, key, lambda: _parse_csv(csv_path, progress), keys=("images", "labels", "usages"))
    splits = {}
    for usage, name in CSV_USAGE_TO_SPLIT.items():
        mask = stored["usages"] == usage
        if mask.any():
            splits[name] = Split(stored["images"][mask], stored["labels"][mask], CLASS_NAMES, f"{csv_path}:{usage}")
    tests = [splits[name] for name in ("public_test", "private_test") if name in splits]
    if tests:
        splits["test"] = Split(np.concatenate([s.images for s in tests]), np.concatenate([s.labels for s in tests]),
                               CLASS_NAMES, f"{csv_path}:PublicTest+PrivateTest")
    return splits


def _parse_csv(csv_path: Path, progress: bool) -> dict:
    """The csv's images, labels and Usage values; a ValueError naming the file (and row) when it is not FER2013's."""
    import pandas as pd

    from fer_utils import progress as progress_bars

    expected = "FER2013's csv is a UTF-8 text file with the header emotion,pixels,Usage and one face per row."
    try:
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ValueError(f"'{csv_path}' is empty. {expected}") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as error:
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        raise ValueError(f"Cannot read '{csv_path}' as a csv ({reason}). {expected}") from None
    frame.columns = [str(column).strip() for column in frame.columns]
    if any(column not in frame.columns for column in CSV_COLUMNS):
        shown = [column[:30] for column in frame.columns[:5]] + (["..."] if len(frame.columns) > 5 else [])
        raise ValueError(f"'{csv_path}' has columns {shown}; FER2013's csv needs {list(CSV_COLUMNS)}.")
    if frame.empty:
        raise ValueError(f"'{csv_path}' has a header but no rows. {expected}")
    images = np.empty((len(frame), IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8)
    labels = np.empty(len(frame), dtype=np.int64)
    usages = frame["Usage"].str.strip().to_numpy().astype(str)
    rows = progress_bars.bar(iterable=zip(frame["emotion"].str.strip(), frame["pixels"], usages), total=len(frame),
                             desc="Parsing csv", disable=not progress, leave=False)
    for index, (emotion, pixels, usage) in enumerate(rows):
        where = f"'{csv_path}' row {index + 2}"
        if usage not in CSV_USAGE_TO_SPLIT:
            raise ValueError(f"{where}: unknown Usage '{usage}'; expected one of {list(CSV_USAGE_TO_SPLIT)}.")
        if not (emotion.isascii() and emotion.isdigit()) or int(emotion) >= len(CLASS_NAMES):
            raise ValueError(f"{where}: emotion '{emotion[:20]}' is not a label in 0..6.")
        tokens = pixels.split()
        if len(tokens) != IMAGE_SIZE * IMAGE_SIZE:
            raise ValueError(f"{where}: pixels has {len(tokens)} values; a 48x48 image needs 2304.")
        try:
            values = np.array(tokens, dtype=np.int64)  # parsed in C; the slow search below runs on errors only
        except (ValueError, OverflowError):
            values = np.array([-1])
        if values.min() < 0 or values.max() > 255:
            bad = next(token for token in tokens if not (token.isascii() and token.isdigit() and int(token) <= 255))
            raise ValueError(f"{where}: pixel value '{bad[:20]}' is not an integer in 0..255. Fix or remove the row.")
        images[index, :, :, 0] = values.reshape(IMAGE_SIZE, IMAGE_SIZE)
        labels[index] = int(emotion)
    return {"images": images, "labels": labels, "usages": usages}


# --- Public loaders -------------------------------------------------------------------------------
def _existing_path(path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"No dataset at '{path}'. Pass a FER2013 root (train/ and test/ class folders), a "
                                "single split folder, or fer2013.csv; or set FER_DATA_DIR.")
    if path.is_file() and path.suffix.lower() in (".zip", ".tar", ".tgz", ".gz", ".7z", ".rar"):
        raise ValueError(f"'{path}' is an archive: extract it first, e.g. `unzip '{path}' -d '{path.parent / path.stem}"
                         "'`, and pass that folder (it holds train/ and test/, or fer2013.csv).")
    return path


def load_dataset(path: str | os.PathLike, cache=True, progress: bool = True) -> dict[str, Split]:
    """Load every split of a dataset root, of a single split folder (keyed by its name) or of `fer2013.csv`."""
    path = _existing_path(path)
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise ValueError(f"'{path}' is a file but not a .csv; pass fer2013.csv or a dataset folder.")
        return load_csv(path, cache=cache, progress=progress)
    splits = _split_folders(path)
    if splits:
        return {name: load_split(folder, cache=cache, progress=progress) for name, folder in splits.items()}
    if _is_class_folder_layout(path):
        return {path.name: load_split(path, cache=cache, progress=progress)}
    found = [entry.name for entry in _children(path)][:10]
    raise ValueError(f"'{path}' holds neither split folders ({', '.join(SPLIT_NAMES)}) nor class folders "
                     f"({', '.join(CLASS_NAMES)}); found {found}. Point to the folder that contains train/ and test/.")


def test_usages(path: str | os.PathLike) -> np.ndarray | None:
    """Which FER2013 test set each image of `load_labelled(path, "test")` is from, where known; else None."""
    path = _existing_path(path)
    if path.is_file():
        splits = load_csv(path, progress=False)
        if "public_test" not in splits or "private_test" not in splits:
            return None
        return np.repeat(["public_test", "private_test"], [len(splits["public_test"]), len(splits["private_test"])])
    test_dir = _split_folders(path).get("test")
    if test_dir is None and _is_class_folder_layout(path) and path.name.lower() == "test":
        test_dir = path
    if test_dir is None:
        return None
    names = [os.path.basename(file_path) for file_path in _list_split_files(test_dir)[0]]
    usages = [next((split for prefix, split in TEST_FILE_PREFIXES.items() if name.startswith(prefix)), None)
              for name in names]
    return np.array(usages) if set(usages) == set(TEST_PROTOCOL_SPLITS) else None


def load_labelled(path: str | os.PathLike, split: str = "test", cache=True, progress: bool = True) -> Split:
    """Load `split` of a dataset root or csv ("private_test" too, where known), or a whole split folder."""
    path = _existing_path(path)
    if path.is_dir():
        splits = _split_folders(path)
        if split in splits:  # decode only the split asked for
            return load_split(splits[split], cache=cache, progress=progress)
        if split in TEST_PROTOCOL_SPLITS:
            usages = test_usages(path)
            if usages is None:
                raise ValueError(f"'{path}' has no '{split}' split: its test/ file names do not all start with "
                                 f"{' or '.join(TEST_FILE_PREFIXES)}. Use split='test'.")
            whole = load_labelled(path, "test", cache=cache, progress=progress)
            return dataclasses.replace(whole.subset(usages == split), source=f"{whole.source}:{split}")
        if not splits and _is_class_folder_layout(path):
            return load_split(path, cache=cache, progress=progress)
    dataset = load_dataset(path, cache=cache, progress=progress)
    if split not in dataset:
        raise ValueError(f"'{path}' has no '{split}' split; it has {sorted(dataset)}. Choose one of those.")
    return dataset[split]


# --- Splits, weights and summaries ----------------------------------------------------------------
def train_val_split(split: Split, val_fraction: float = 0.1, seed: int = 42) -> tuple[Split, Split]:
    """Carve a stratified, seeded validation split out of a training split; return (train, val)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}.")
    rng = np.random.default_rng(seed)
    val_mask = np.zeros(len(split), dtype=bool)
    for label in range(len(split.class_names)):
        members = np.flatnonzero(split.labels == label)
        take = max(int(round(val_fraction * len(members))), 1 if len(members) >= 2 else 0)
        take = min(take, max(len(members) - 1, 0))
        val_mask[rng.permutation(members)[:take]] = True
    return split.subset(~val_mask), split.subset(val_mask)


def class_weights(labels, num_classes: int = len(CLASS_NAMES)) -> dict[int, float]:
    """Balanced class weights `n / (classes present * count_c)`; classes with no samples get 1.0."""
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=num_classes)
    present = counts > 0
    weights = np.ones(num_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return {index: float(weight) for index, weight in enumerate(weights)}


def dataset_summary(dataset: dict[str, Split]):
    """A pandas DataFrame of image counts per class (rows) and split (columns), with `total`s."""
    import pandas as pd

    class_names = next(iter(dataset.values())).class_names if dataset else CLASS_NAMES
    columns = {name: np.bincount(split.labels, minlength=len(class_names)) for name, split in dataset.items()}
    table = pd.DataFrame(columns, index=pd.Index(class_names, name="class"))
    if len(columns) > 1:
        table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    return table.astype(int)


# --- Discovery ------------------------------------------------------------------------------------
def _holds_fer(folder: Path) -> Path | None:
    """The dataset inside `folder` (itself, or its fer2013.csv), or None."""
    try:
        if any(_is_class_folder_layout(split) for split in _split_folders(folder).values()):
            return folder
        if (folder / "fer2013.csv").is_file():
            return folder / "fer2013.csv"
    except OSError:
        pass
    return None


def _search_kaggle_input(kaggle_input: Path) -> Path | None:
    """/kaggle/input/fer2013 first, then other mounts up to three levels deep."""
    for pattern in ("fer2013", "*", "*/*", "*/*/*"):
        for path in sorted(kaggle_input.glob(pattern)) if kaggle_input.is_dir() else []:
            if path.is_dir() and (found := _holds_fer(path)):
                return found
    return None


def _download_with_kagglehub() -> Path | None:
    try:
        import kagglehub
    except ImportError:
        return None
    try:
        path = Path(kagglehub.dataset_download(KAGGLEHUB_HANDLE))
    except Exception as error:  # kagglehub raises many kinds of errors when offline
        warnings.warn(f"kagglehub could not download {KAGGLEHUB_HANDLE} ({type(error).__name__}).", stacklevel=3)
        return None
    return _holds_fer(path) or path


def find_dataset(path=None, download: bool = True) -> DatasetLocation:
    """Find FER2013 (`path`, `$FER_DATA_DIR`, Kaggle mounts, ./data/fer2013, kagglehub), else the demo data."""
    if path is not None:
        return DatasetLocation(_existing_path(path), "argument")
    if os.environ.get("FER_DATA_DIR"):
        return DatasetLocation(_existing_path(os.environ["FER_DATA_DIR"]), "FER_DATA_DIR")
    if found := _search_kaggle_input(KAGGLE_INPUT):
        return DatasetLocation(found, "kaggle-input")
    if found := _holds_fer(Path("data") / "fer2013"):  # a missing folder is an OSError there: None
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
