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


def test_rotation_zoom_and_shift_are_one_resampling_that_keeps_faces_sharper():
    """Keras's three geometric layers interpolate one after the other; the one affine layer interpolates once."""
    import keras

    config = AugmentationConfig(flip=False, rotation=0.05, zoom=0.1, translation=0.1, contrast=0.0)
    block = build_augmentation(config, seed=1)
    assert [layer.name for layer in block.layers] == ["random_affine"]
    rng = np.random.default_rng(0)
    faces = keras.ops.convert_to_numpy(keras.ops.image.resize(rng.uniform(0, 255, (32, 24, 24, 1)), (48, 48)))

    def sharpness(images):  # mean squared Laplacian away from the reflected borders
        a = np.asarray(images)[:, 8:-8, 8:-8, 0]
        return float(((4 * a[:, 1:-1, 1:-1] - a[:, :-2, 1:-1] - a[:, 2:, 1:-1] - a[:, 1:-1, :-2] - a[:, 1:-1, 2:]) ** 2).mean())

    chain = keras.Sequential([keras.layers.RandomRotation(0.05, fill_mode="reflect", seed=2),
                              keras.layers.RandomZoom(0.1, fill_mode="reflect", seed=3),
                              keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=4)])
    assert sharpness(block(faces, training=True)) > 1.5 * sharpness(chain(faces, training=True))
    still = build_augmentation(AugmentationConfig(flip=False, rotation=1e-9, zoom=1e-9, translation=1e-9, contrast=0.0))
    np.testing.assert_allclose(np.asarray(still(faces, training=True)), faces, atol=1e-3)  # no motion: no blur


def test_a_model_with_the_affine_layer_saves_and_loads(tmp_path):
    import keras

    from fer_utils.augmentation import random_affine_class

    layer = random_affine_class()(0.05, 0.1, 0.1, seed=3, name="random_affine")
    model = keras.Sequential([keras.Input((48, 48, 1)), layer])
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.layers[0].get_config()["zoom"] == 0.1
    faces = np.full((2, 48, 48, 1), 7.0, "float32")
    np.testing.assert_array_equal(np.asarray(loaded(faces)), faces)
