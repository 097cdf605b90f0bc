"""Small generated datasets for tests (imported by test modules; pytest fixtures live in conftest.py)."""

import numpy as np


def write_image(path, array):
    """Write a uint8 array (H, W) or (H, W, 3) as an image file (format from the suffix)."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def make_split_folder(root, per_class=2, classes=None, suffix=".png"):
    """A labelled folder `root/<class>/*` whose images are filled with 10 * (class index + 1).

    The constant pixel value identifies the class an image came from, so tests can check that
    folders are mapped onto the canonical label order by name.
    """
    from fer_utils import CLASS_NAMES

    for index, name in enumerate(classes or CLASS_NAMES):
        label = CLASS_NAMES.index(name)
        for number in range(per_class):
            write_image(root / name / f"img_{number}{suffix}", np.full((48, 48), 10 * (label + 1), np.uint8))
    return root
