"""Dataset checks for notebook 01: pixel statistics, exact duplicates (FER2013 shares some between its
training and test splits) and nearly blank images."""

from __future__ import annotations

import hashlib

import numpy as np


def pixel_statistics(dataset: dict):
    """A DataFrame of pixel mean, std and quartiles per (split, class) of `{split name: Split}`."""
    import pandas as pd

    rows = []
    for split_name, split in dataset.items():
        for label, class_name in enumerate(split.class_names):
            pixels = split.images[split.labels == label].astype(np.float32)
            if pixels.size:
                p25, median, p75 = np.percentile(pixels, [25, 50, 75])
                rows.append({"split": split_name, "class": class_name, "images": len(pixels),
                             "mean": float(pixels.mean()), "std": float(pixels.std()),
                             "p25": float(p25), "median": float(median), "p75": float(p75)})
    return pd.DataFrame(rows).set_index(["split", "class"])


def find_duplicates(dataset: dict):
    """Byte-identical images within and across splits of `{split name: Split}`: one row per image with a twin,
    `group` (shared by twins), `split`, `index`, `label` (class name)."""
    import pandas as pd

    records = [(hashlib.blake2b(image.tobytes(), digest_size=12).hexdigest(), split_name, index,
                split.class_names[int(label)])
               for split_name, split in dataset.items()
               for index, (image, label) in enumerate(zip(split.images, split.labels))]
    frame = pd.DataFrame(records, columns=["hash", "split", "index", "label"])
    frame = frame[frame.duplicated("hash", keep=False)].copy()
    frame["group"] = frame.groupby("hash", sort=False).ngroup()
    return frame[["group", "split", "index", "label"]].sort_values(["group", "split", "index"]).reset_index(drop=True)


def duplicate_summary(duplicates) -> dict:
    """Counts from `find_duplicates`: groups, redundant copies, cross-split groups and label conflicts."""
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
