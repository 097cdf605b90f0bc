"""The augmentation block: identity at inference, random (and in range) in training."""

import numpy as np
import pytest

from fer_utils.augmentation import AugmentationConfig, build_augmentation


def _faces(count=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 48, 48, 1)).astype("float32")


def test_identity_at_inference():
    images = _faces()
    block = build_augmentation(seed=1)
    np.testing.assert_array_equal(np.asarray(block(images, training=False)), images)


def test_training_mode_changes_images_but_keeps_shape_and_pixel_range():
    images = _faces()
    augmented = np.asarray(build_augmentation(seed=1)(images, training=True))
    assert augmented.shape == images.shape
    assert not np.allclose(augmented, images)
    assert augmented.min() >= 0.0 and augmented.max() <= 255.0


def test_same_seed_same_augmentation():
    images = _faces()
    first = np.asarray(build_augmentation(seed=3)(images, training=True))
    second = np.asarray(build_augmentation(seed=3)(images, training=True))
    np.testing.assert_allclose(first, second)


def test_each_transform_can_be_switched_off():
    block = build_augmentation(AugmentationConfig(flip=True, rotation=0, zoom=0, translation=0, contrast=0))
    assert [layer.name for layer in block.layers] == ["random_flip"]
    nothing = build_augmentation(AugmentationConfig(flip=False, rotation=0, zoom=0, translation=0, contrast=0))
    assert [layer.name for layer in nothing.layers] == ["no_augmentation"]
    images = _faces()
    np.testing.assert_array_equal(np.asarray(nothing(images, training=True)), images)


@pytest.mark.parametrize("field", ["rotation", "zoom", "translation", "contrast"])
def test_out_of_range_strength_is_a_clear_error(field):
    with pytest.raises(ValueError, match=field):
        build_augmentation(AugmentationConfig(**{field: 1.5}))
