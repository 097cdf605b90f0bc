"""Tests for fer_utils.data: loaders, class mapping, cache, splits, discovery and bad input."""

import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import make_split_folder, write_image
from fer_utils import CLASS_NAMES, cli, data, demo

# ---------------------------------------------------------------------------------------------
# Mapping
# ---------------------------------------------------------------------------------------------


def test_class_order_is_fer2013_official_order():
    # fer2013.csv's emotion column: 0=Angry, 1=Disgust, 2=Fear, 3=Happy, 4=Sad, 5=Surprise, 6=Neutral.
    assert CLASS_NAMES == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def test_folders_are_mapped_by_name_not_by_alphabetical_order(tmp_path):
    split = data.load_split(make_split_folder(tmp_path / "test"), cache=False, progress=False)
    # Alphabetical order would put neutral before sad; the canonical order has sad=4, neutral=6.
    assert split.class_names == CLASS_NAMES
    for label in range(7):
        values = split.images[split.labels == label]
        assert len(values) == 2
        assert np.all(values == 10 * (label + 1))


def test_class_folder_names_are_case_insensitive(tmp_path):
    root = tmp_path / "split"
    for index, name in enumerate(CLASS_NAMES):
        write_image(root / name.capitalize() / "a.png", np.full((48, 48), index, np.uint8))
    split = data.load_split(root, cache=False, progress=False)
    assert sorted(split.labels.tolist()) == list(range(7))


# ---------------------------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------------------------


def test_load_dataset_from_msambare_root(tmp_path):
    make_split_folder(tmp_path / "train", per_class=3)
    make_split_folder(tmp_path / "test", per_class=1, suffix=".jpg")
    dataset = data.load_dataset(tmp_path, cache=False, progress=False)
    assert list(dataset) == ["train", "test"]
    assert dataset["train"].images.shape == (21, 48, 48, 1)
    assert dataset["train"].images.dtype == np.uint8
    assert dataset["train"].labels.dtype == np.int64
    assert np.bincount(dataset["test"].labels, minlength=7).tolist() == [1] * 7


def test_root_with_only_some_splits(tmp_path):
    make_split_folder(tmp_path / "test")
    dataset = data.load_dataset(tmp_path, cache=False, progress=False)
    assert list(dataset) == ["test"]


def test_single_split_folder_is_keyed_by_its_name(tmp_path):
    folder = make_split_folder(tmp_path / "my_faces")
    dataset = data.load_dataset(folder, cache=False, progress=False)
    assert list(dataset) == ["my_faces"]
    assert len(dataset["my_faces"]) == 14


def test_load_labelled_accepts_root_or_single_folder(tmp_path):
    make_split_folder(tmp_path / "root" / "train", per_class=2)
    make_split_folder(tmp_path / "root" / "test", per_class=1)
    assert len(data.load_labelled(tmp_path / "root", split="test", cache=False, progress=False)) == 7
    assert len(data.load_labelled(tmp_path / "root" / "train", cache=False, progress=False)) == 14
    with pytest.raises(ValueError, match="no 'val' split"):
        data.load_labelled(tmp_path / "root", split="val", cache=False, progress=False)


def test_rgb_and_wrong_size_images_are_converted_with_a_counted_warning(tmp_path):
    root = make_split_folder(tmp_path / "s", per_class=1)
    write_image(root / "happy" / "rgb.png", np.full((48, 48, 3), 200, np.uint8))
    write_image(root / "happy" / "big.png", np.full((96, 64), 100, np.uint8))
    with pytest.warns(UserWarning, match="converted 1 colour image.*resized 1 image"):
        split = data.load_split(root, cache=False, progress=False)
    assert split.images.shape == (9, 48, 48, 1)
    assert sorted(np.unique(split.images[split.labels == 3]).tolist()) == [40, 100, 200]


def _write_csv(path, rows, header="emotion,pixels,Usage"):
    lines = [header] + [f"{label},{pixels},{usage}" for label, pixels, usage in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _pixels(value):
    return " ".join([str(value)] * 2304)


def test_load_csv_maps_labels_by_index_and_usage_to_splits(tmp_path):
    rows = [(label, _pixels(label * 30), "Training") for label in range(7)]
    rows += [(3, _pixels(1), "PublicTest"), (4, _pixels(2), "PrivateTest"), (6, _pixels(3), "PrivateTest")]
    dataset = data.load_dataset(_write_csv(tmp_path / "fer2013.csv", rows), cache=False, progress=False)
    assert set(dataset) == {"train", "public_test", "private_test", "test"}
    train = dataset["train"]
    assert train.labels.tolist() == list(range(7))
    assert all(np.all(train.images[i] == i * 30) for i in range(7))
    assert dataset["public_test"].labels.tolist() == [3]
    assert dataset["test"].labels.tolist() == [3, 4, 6]  # PublicTest then PrivateTest, like msambare's test/


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------


def test_cache_is_used_and_invalidated_when_files_change(tmp_path):
    root = make_split_folder(tmp_path / "split", per_class=1)
    cache = tmp_path / "cache"
    first = data.load_split(root, cache=cache, progress=False)
    assert len(list(cache.glob("*.npz"))) == 1

    # A warm load must not decode: make decoding impossible and load again.
    original = data._decode_file
    data._decode_file = None
    try:
        warm = data.load_split(root, cache=cache, progress=False)
    finally:
        data._decode_file = original
    assert np.array_equal(warm.images, first.images)

    # Rewriting one image (new size and mtime) must change what is served.
    target = root / "angry" / "img_0.png"
    write_image(target, np.full((48, 48), 255, np.uint8))
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    changed = data.load_split(root, cache=cache, progress=False)
    assert changed.images[changed.labels == 0].max() == 255
    # Adding a file changes it too.
    write_image(root / "sad" / "extra.png", np.zeros((48, 48), np.uint8))
    assert len(data.load_split(root, cache=cache, progress=False)) == 8


def test_fingerprint_changes_with_the_file_list(tmp_path):
    root = make_split_folder(tmp_path / "split", per_class=1)
    before = data.dataset_fingerprint(root)
    assert before == data.dataset_fingerprint(root)
    (root / "fear" / "img_0.png").rename(root / "fear" / "renamed.png")
    assert data.dataset_fingerprint(root) != before


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_unwritable_cache_falls_back_gracefully_nonroot(tmp_path):
    root = make_split_folder(tmp_path / "split", per_class=1)
    cache = tmp_path / "readonly"
    cache.mkdir()
    cache.chmod(stat.S_IRUSR | stat.S_IXUSR)
    with pytest.warns(UserWarning, match="Could not write the data cache"):
        split = data.load_split(root, cache=cache, progress=False)
    assert len(split) == 7


def test_unwritable_cache_falls_back_gracefully(tmp_path):
    root = make_split_folder(tmp_path / "split", per_class=1)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="Could not write the data cache"):
        split = data.load_split(root, cache=blocker / "cache", progress=False)
    assert len(split) == 7


# ---------------------------------------------------------------------------------------------
# Splits, weights, summary
# ---------------------------------------------------------------------------------------------


def _labels_split(counts):
    labels = np.concatenate([np.full(count, label) for label, count in enumerate(counts)]).astype(np.int64)
    images = np.arange(len(labels), dtype=np.int64).astype(np.uint8)[:, None, None, None] * np.ones((1, 48, 48, 1), np.uint8)
    return data.Split(images, labels)


def test_train_val_split_is_stratified_deterministic_and_disjoint():
    split = _labels_split([100, 10, 50, 200, 80, 40, 60])
    train_a, val_a = data.train_val_split(split, val_fraction=0.1, seed=7)
    train_b, val_b = data.train_val_split(split, val_fraction=0.1, seed=7)
    assert np.array_equal(val_a.images, val_b.images)
    assert np.bincount(val_a.labels, minlength=7).tolist() == [10, 1, 5, 20, 8, 4, 6]
    assert len(train_a) + len(val_a) == len(split)
    _, val_c = data.train_val_split(split, val_fraction=0.1, seed=8)
    assert not np.array_equal(val_a.images, val_c.images)


def test_train_val_split_rejects_bad_fraction():
    with pytest.raises(ValueError, match="val_fraction"):
        data.train_val_split(_labels_split([2] * 7), val_fraction=1.0)


def test_class_weights_are_balanced():
    weights = data.class_weights(np.array([0, 0, 0, 1]), num_classes=3)
    assert weights == pytest.approx({0: 4 / (2 * 3), 1: 4 / (2 * 1), 2: 1.0})


def test_dataset_summary_counts_per_split_and_class(tmp_path):
    make_split_folder(tmp_path / "train", per_class=3)
    make_split_folder(tmp_path / "test", per_class=1)
    table = data.dataset_summary(data.load_dataset(tmp_path, cache=False, progress=False))
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["train", "test", "total"]
    assert list(table.index) == [*CLASS_NAMES, "total"]
    assert table.loc["total", "total"] == 28
    assert table.loc["happy", "train"] == 3


# ---------------------------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def isolated_discovery(tmp_path, monkeypatch):
    """No FER_DATA_DIR, an empty working directory, no Kaggle mount and no kagglehub download."""
    monkeypatch.delenv("FER_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data, "KAGGLE_INPUT", tmp_path / "kaggle" / "input")
    monkeypatch.setattr(data, "_download_with_kagglehub", lambda: None)
    return tmp_path


def _fer_root(path):
    make_split_folder(path / "train", per_class=1)
    make_split_folder(path / "test", per_class=1)
    return path


def test_discovery_order(isolated_discovery, monkeypatch):
    tmp = isolated_discovery
    explicit = _fer_root(tmp / "explicit")
    env = _fer_root(tmp / "env")
    kaggle = _fer_root(tmp / "kaggle" / "input" / "some-owner-fer" / "data")
    local = _fer_root(tmp / "data" / "fer2013")
    downloaded = _fer_root(tmp / "hub")
    monkeypatch.setattr(data, "_download_with_kagglehub", lambda: downloaded)
    monkeypatch.setenv("FER_DATA_DIR", str(env))

    assert data.find_dataset(explicit) == data.DatasetLocation(explicit, "argument")
    assert data.find_dataset() == data.DatasetLocation(env, "FER_DATA_DIR")
    monkeypatch.delenv("FER_DATA_DIR")
    assert data.find_dataset() == data.DatasetLocation(kaggle, "kaggle-input")
    # The canonical Kaggle mount wins over other mounts.
    preferred = _fer_root(tmp / "kaggle" / "input" / "fer2013")
    assert data.find_dataset().path == preferred
    monkeypatch.setattr(data, "KAGGLE_INPUT", tmp / "no-kaggle")
    assert data.find_dataset().source == "local"
    assert data.find_dataset().path == Path("data") / "fer2013"
    import shutil

    shutil.rmtree(local)
    assert data.find_dataset() == data.DatasetLocation(downloaded, "kagglehub")
    with pytest.warns(UserWarning, match="built-in DEMO dataset"):
        assert data.find_dataset(download=False).source == "demo"


def test_discovery_finds_csv_in_kaggle_input(isolated_discovery):
    csv = isolated_discovery / "kaggle" / "input" / "challenges" / "fer2013.csv"
    csv.parent.mkdir(parents=True)
    _write_csv(csv, [(0, _pixels(0), "Training")])
    assert data.find_dataset().path == csv


def test_discovery_falls_back_to_demo_loudly(isolated_discovery):
    with pytest.warns(UserWarning, match="DEMO dataset"):
        location = data.find_dataset()
    assert location.is_demo
    dataset = data.load_dataset(location.path, progress=False)
    assert set(dataset) == {"train", "test"}


def test_missing_explicit_path_is_an_error(isolated_discovery):
    with pytest.raises(FileNotFoundError, match="No dataset at"):
        data.find_dataset(isolated_discovery / "nope")


# ---------------------------------------------------------------------------------------------
# Demo data
# ---------------------------------------------------------------------------------------------


def test_demo_dataset_is_deterministic_and_imbalanced(tmp_path):
    first = data.load_dataset(demo.make_demo_dataset(tmp_path / "a", per_class=12, seed=3), cache=False, progress=False)
    second = data.load_dataset(demo.make_demo_dataset(tmp_path / "b", per_class=12, seed=3), cache=False, progress=False)
    third = data.load_dataset(demo.make_demo_dataset(tmp_path / "c", per_class=12, seed=4), cache=False, progress=False)
    for split in ("train", "test"):
        assert np.array_equal(first[split].images, second[split].images)
        assert np.array_equal(first[split].labels, second[split].labels)
    assert not np.array_equal(first["train"].images, third["train"].images)
    counts = dict(zip(CLASS_NAMES, np.bincount(first["train"].labels, minlength=7)))
    assert counts["disgust"] < counts["angry"] < counts["happy"]
    # Faces vary: no two training images are identical, and pixel values span a real range.
    flat = first["train"].images.reshape(len(first["train"]), -1)
    assert len(np.unique(flat, axis=0)) == len(flat)
    assert flat.std() > 20


def test_demo_dataset_refuses_to_overwrite(tmp_path):
    demo.make_demo_dataset(tmp_path, per_class=6)
    marker = tmp_path / "train" / "happy" / "mine.txt"
    marker.write_text("keep me")
    with pytest.raises(ValueError, match="refusing to write over it"):
        demo.make_demo_dataset(tmp_path, per_class=6)
    assert marker.read_text() == "keep me"


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_demo_dataset_is_learnable_but_not_trivial(demo_root):
    """A linear classifier on pixels beats chance clearly but stays well short of perfect."""
    from sklearn.linear_model import LogisticRegression

    dataset = data.load_dataset(demo_root, cache=False, progress=False)
    train, test = dataset["train"], dataset["test"]
    model = LogisticRegression(max_iter=100).fit(train.images.reshape(len(train), -1) / 255.0, train.labels)
    accuracy = model.score(test.images.reshape(len(test), -1) / 255.0, test.labels)
    assert 1 / 7 < accuracy < 0.95


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="No dataset at"):
        data.load_dataset(tmp_path / "missing")


def test_root_with_neither_splits_nor_classes(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(ValueError, match="neither split folders .* nor class folders"):
        data.load_dataset(tmp_path)


def test_unknown_class_folder(tmp_path):
    root = make_split_folder(tmp_path / "test", per_class=1)
    write_image(root / "contempt" / "a.png", np.zeros((48, 48), np.uint8))
    with pytest.raises(ValueError, match=r"Unknown class folder\(s\) \['contempt'\]"):
        data.load_split(root, cache=False)


def test_missing_class_folder(tmp_path):
    root = make_split_folder(tmp_path / "test", per_class=1, classes=[c for c in CLASS_NAMES if c != "disgust"])
    with pytest.raises(ValueError, match=r"Missing class folder\(s\) \['disgust'\]"):
        data.load_split(root, cache=False)


def test_empty_class_folder(tmp_path):
    root = make_split_folder(tmp_path / "test", per_class=1)
    for file in (root / "fear").iterdir():
        file.unlink()
    with pytest.raises(ValueError, match="fear' is empty"):
        data.load_split(root, cache=False)


@pytest.mark.parametrize("content", [b"this is not an image", b"\xff\xd8\xff\xe0 truncated jpeg", b""])
def test_corrupt_or_non_image_file_is_named(tmp_path, content):
    root = make_split_folder(tmp_path / "test", per_class=1)
    bad = root / "sad" / "broken.jpg"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match=r"Cannot decode '.*sad/broken\.jpg'"):
        data.load_split(root, cache=False, progress=False)


def test_hidden_files_are_ignored(tmp_path):
    root = make_split_folder(tmp_path / "test", per_class=1)
    (root / ".DS_Store").write_text("finder")
    (root / "sad" / ".hidden").write_text("x")
    assert len(data.load_split(root, cache=False, progress=False)) == 7


def test_csv_with_wrong_columns(tmp_path):
    path = _write_csv(tmp_path / "bad.csv", [(0, _pixels(0), "Training")], header="label,pixels,Usage")
    with pytest.raises(ValueError, match=r"needs \['emotion', 'pixels', 'Usage'\]"):
        data.load_dataset(path, cache=False)


def test_csv_pixel_string_of_wrong_length_names_the_row(tmp_path):
    rows = [(0, _pixels(0), "Training"), (1, "1 2 3", "Training")]
    with pytest.raises(ValueError, match="row 3: pixels has 3 values"):
        data.load_dataset(_write_csv(tmp_path / "fer.csv", rows), cache=False, progress=False)


def test_csv_unknown_usage_names_the_row(tmp_path):
    rows = [(0, _pixels(0), "Training"), (1, _pixels(0), "Validation")]
    with pytest.raises(ValueError, match="row 3: unknown Usage 'Validation'"):
        data.load_dataset(_write_csv(tmp_path / "fer.csv", rows), cache=False, progress=False)


def test_csv_label_out_of_range_names_the_row(tmp_path):
    rows = [(7, _pixels(0), "Training")]
    with pytest.raises(ValueError, match="row 2: emotion '7'"):
        data.load_dataset(_write_csv(tmp_path / "fer.csv", rows), cache=False, progress=False)


def test_split_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"\(N, 48, 48, 1\)"):
        data.Split(np.zeros((2, 48, 48), np.uint8), np.zeros(2, np.int64))


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def test_cli_info_prints_the_counts_table(demo_root, capsys):
    assert cli.main(["info", str(demo_root)]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "test" in out
    expected = data.dataset_summary(data.load_dataset(demo_root, progress=False))
    assert expected.to_string() in out


def test_cli_demo_data_writes_the_layout(tmp_path, capsys):
    assert cli.main(["demo-data", str(tmp_path / "demo"), "--per-class", "8", "--seed", "1"]) == 0
    assert sorted(p.name for p in (tmp_path / "demo" / "train").iterdir()) == sorted(CLASS_NAMES)
    assert "Wrote the demo dataset" in capsys.readouterr().out


def test_cli_errors_are_one_line_without_traceback(tmp_path, capsys):
    assert cli.main(["info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No dataset at")
    assert "Traceback" not in err and err.count("\n") == 1


def test_cli_runs_as_a_module(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "fer_utils", "info", str(tmp_path / "missing")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "No dataset at" in result.stderr
