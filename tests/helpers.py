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


def write_notop_weights(folder, backbone, img_size=32, seed=0):
    """Write a randomly initialised stand-in for Keras's ImageNet "notop" file of `backbone`.

    The file has Keras's exact name and its legacy HDF5 layout (what `keras.applications`
    downloads), so code that finds and loads the real file is exercised offline. Returns the
    backbone whose weights were written, for comparisons.
    """
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from fer_utils import models

    spec = models.get_spec(backbone)
    keras.utils.set_random_seed(seed)
    constructor = getattr(keras.applications, spec.application)
    source = constructor(include_top=False, weights=None, input_shape=(img_size, img_size, 3))
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / spec.weights_file, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)
    return source
