"""Tests of Grad-CAM (fer_utils.gradcam.gradcam_heatmaps) on models obeying the structure contract."""

import numpy as np
import pytest
from contract_models import linear_contract_model, tiny_contract_model

from fer_utils import gradcam


@pytest.fixture(scope="module")
def tiny_model():
    return tiny_contract_model(seed=0)


@pytest.fixture(scope="module")
def faces():
    return np.random.default_rng(0).integers(0, 256, (5, 48, 48, 1), dtype=np.uint8)


def test_heatmaps_have_the_image_size_and_lie_in_zero_one(tiny_model, faces):
    heatmaps = gradcam.gradcam_heatmaps(tiny_model, faces, batch_size=2)
    assert heatmaps.shape == (5, 48, 48)
    assert heatmaps.dtype == np.float32
    assert heatmaps.min() >= 0.0 and heatmaps.max() <= 1.0
    # Each heatmap is divided by its own maximum: 1 wherever there is positive evidence at all.
    peaks = heatmaps.max(axis=(1, 2))
    assert np.all((peaks == 0.0) | np.isclose(peaks, 1.0))


def test_default_layer_is_the_last_feature_map_of_the_backbone(tiny_model, faces):
    assert gradcam.default_gradcam_layer(tiny_model) == "conv2"
    np.testing.assert_allclose(
        gradcam.gradcam_heatmaps(tiny_model, faces[:2]),
        gradcam.gradcam_heatmaps(tiny_model, faces[:2], layer_name="conv2"),
    )
    earlier = gradcam.gradcam_heatmaps(tiny_model, faces[:2], layer_name="conv1", class_index=3)
    assert earlier.shape == (2, 48, 48)


def test_unknown_layer_lists_the_layers_to_choose_from(tiny_model, faces):
    with pytest.raises(ValueError, match="conv1"):
        gradcam.gradcam_heatmaps(tiny_model, faces, layer_name="block5_conv3")


def test_model_without_the_contract_structure_is_a_clear_error(faces):
    import keras

    plain = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(), keras.layers.Dense(7, activation="softmax")])
    with pytest.raises(ValueError, match="backbone"):
        gradcam.gradcam_heatmaps(plain, faces)


def test_heatmap_of_a_linear_model_is_the_normalised_image():
    # Class 0's logit is the mean of the (scaled) pixels, so its Grad-CAM is the image over its
    # maximum; class 1's logit is minus that, so ReLU leaves no positive evidence at all.
    model = linear_contract_model()
    face = np.zeros((1, 48, 48, 1), np.uint8)
    face[0, 10:20, 30:40, 0] = 200
    face[0, 30:40, 5:15, 0] = 100
    class_zero = gradcam.gradcam_heatmaps(model, face, class_index=0)
    np.testing.assert_allclose(class_zero[0], face[0, :, :, 0] / 200.0, atol=1e-5)
    class_one = gradcam.gradcam_heatmaps(model, face, class_index=1)
    np.testing.assert_array_equal(class_one, np.zeros((1, 48, 48)))
    # The default class is the predicted one: class 0, since the mean pixel is positive.
    np.testing.assert_allclose(gradcam.gradcam_heatmaps(model, face), class_zero)


@pytest.mark.parametrize(("backbone", "layer"), [("small_cnn", "stage4_conv2_relu"), ("vgg16", "block5_conv3")])
def test_gradcam_on_the_project_models(faces, backbone, layer):
    from fer_utils import models

    model = models.build_model(backbone, weights=None, img_size=48)
    # The default passes over the final pooling layer to the last convolution block's output.
    assert gradcam.default_gradcam_layer(model) == layer
    heatmaps = gradcam.gradcam_heatmaps(model, faces[:2])
    assert heatmaps.shape == (2, 48, 48)
    assert 0.0 <= heatmaps.min() and heatmaps.max() <= 1.0


def test_a_frozen_backbone_gives_the_same_heatmaps(faces):
    # Phase-1 runs are saved with a non-trainable backbone; gradients must still reach its feature maps.
    model = tiny_contract_model(seed=1)
    trainable = gradcam.gradcam_heatmaps(model, faces[:2], class_index=[0, 4])
    model.get_layer("backbone").trainable = False
    frozen = gradcam.gradcam_heatmaps(model, faces[:2], class_index=[0, 4])
    np.testing.assert_allclose(frozen, trainable, atol=1e-6)
    assert frozen.max() > 0
