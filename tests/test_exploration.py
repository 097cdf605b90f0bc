"""Tests for fer_utils.exploration: pixel statistics, duplicates and blank images."""

import numpy as np
import pytest

from fer_utils import data, exploration


def _split(values, labels):
    images = np.stack([np.full((48, 48, 1), v, np.uint8) for v in values])
    return data.Split(images, np.asarray(labels, np.int64))


def test_pixel_statistics_per_split_and_class():
    dataset = {"train": _split([10, 30, 200], [0, 0, 3])}
    table = exploration.pixel_statistics(dataset)
    assert list(table.index) == [("train", "angry"), ("train", "happy")]
    assert table.loc[("train", "angry"), "mean"] == pytest.approx(20.0)
    assert table.loc[("train", "angry"), "std"] == pytest.approx(10.0)
    assert table.loc[("train", "happy"), "images"] == 1


def test_duplicates_within_and_across_splits_with_label_conflicts():
    dataset = {
        "train": _split([1, 1, 2, 3], [0, 0, 1, 2]),
        "test": _split([3, 4], [5, 6]),
    }
    duplicates = exploration.find_duplicates(dataset)
    assert len(duplicates) == 4  # two copies of 1 in train; 3 in train and in test
    summary = exploration.duplicate_summary(duplicates)
    assert summary == {
        "groups": 2,
        "redundant_images": 2,
        "groups_across_splits": 1,
        "groups_with_conflicting_labels": 1,
    }


def test_no_duplicates():
    duplicates = exploration.find_duplicates({"train": _split([1, 2, 3], [0, 1, 2])})
    assert duplicates.empty
    assert exploration.duplicate_summary(duplicates)["groups"] == 0


def test_near_blank_finds_flat_images():
    split = _split([0, 128], [0, 1])
    noisy = split.images.copy()
    noisy[1] = np.random.default_rng(0).integers(0, 255, size=(48, 48, 1), dtype=np.uint8)
    split = data.Split(noisy, split.labels)
    assert exploration.near_blank(split).tolist() == [0]
    with pytest.raises(ValueError, match="non-negative"):
        exploration.near_blank(split, std_threshold=-1)
