"""Dataset checks for notebook 01: pixel statistics, exact duplicates (and train/test overlap), blank images.

FER2013 is known to contain exact duplicate images, some of them shared between the training and
test splits, and a few nearly blank images. These functions find them so the notebooks can report
them honestly instead of silently training and testing on the same faces.
"""

from __future__ import annotations

import hashlib

import numpy as np


def pixel_statistics(dataset: dict) -> "pd.DataFrame":
    """Mean, standard deviation and quartiles of pixel values per split and class.

    Args:
        dataset: `{split name: Split}` as returned by `fer_utils.data.load_dataset`.

    Returns:
        A DataFrame with one row per (split, class) and columns images, mean, std, p25, median, p75.
    """
    import pandas as pd

    rows = []
    for split_name, split in dataset.items():
        for label, class_name in enumerate(split.class_names):
            pixels = split.images[split.labels == label].astype(np.float32)
            if pixels.size == 0:
                continue
            quartiles = np.percentile(pixels, [25, 50, 75])
            rows.append(
                {
                    "split": split_name,
                    "class": class_name,
                    "images": int(len(pixels)),
                    "mean": float(pixels.mean()),
                    "std": float(pixels.std()),
                    "p25": float(quartiles[0]),
                    "median": float(quartiles[1]),
                    "p75": float(quartiles[2]),
                }
            )
    return pd.DataFrame(rows).set_index(["split", "class"])


def _image_hashes(images: np.ndarray) -> list[str]:
    return [hashlib.blake2b(image.tobytes(), digest_size=12).hexdigest() for image in images]


def find_duplicates(dataset: dict) -> "pd.DataFrame":
    """Groups of byte-identical images, within and across splits.

    Returns a DataFrame with one row per image that has at least one identical twin: columns `group`
    (an id shared by identical images), `split`, `index` (row in that split), `label` (class name).
    Use `duplicate_summary` for the counts.
    """
    import pandas as pd

    records = []
    for split_name, split in dataset.items():
        for index, (digest, label) in enumerate(zip(_image_hashes(split.images), split.labels)):
            records.append((digest, split_name, index, split.class_names[int(label)]))
    frame = pd.DataFrame(records, columns=["hash", "split", "index", "label"])
    frame = frame[frame.duplicated("hash", keep=False)].copy()
    frame["group"] = frame.groupby("hash", sort=False).ngroup()
    return frame[["group", "split", "index", "label"]].sort_values(["group", "split", "index"]).reset_index(drop=True)


def duplicate_summary(duplicates: "pd.DataFrame") -> dict:
    """Counts from `find_duplicates`: groups, redundant copies, cross-split groups and label conflicts."""
    if duplicates.empty:
        return {"groups": 0, "redundant_images": 0, "groups_across_splits": 0, "groups_with_conflicting_labels": 0}
    grouped = duplicates.groupby("group")
    return {
        "groups": int(grouped.ngroups),
        "redundant_images": int(len(duplicates) - grouped.ngroups),
        "groups_across_splits": int((grouped["split"].nunique() > 1).sum()),
        "groups_with_conflicting_labels": int((grouped["label"].nunique() > 1).sum()),
    }


def near_blank(split, std_threshold: float = 3.0) -> np.ndarray:
    """Indices of images whose pixel standard deviation is below `std_threshold` (flat, empty frames)."""
    if std_threshold < 0:
        raise ValueError(f"std_threshold must be non-negative, got {std_threshold}.")
    spread = split.images.reshape(len(split), -1).astype(np.float32).std(axis=1)
    return np.flatnonzero(spread < std_threshold)
