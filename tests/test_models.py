"""The model builder: structure contract, in-model preprocessing, saving, weights handling."""

import numpy as np
import pytest

from fer_utils import CLASS_NAMES, gradcam, models, training
from helpers import write_notop_weights

CONTRACT_LAYERS = [
    "pixels", "augmentation", "resize", "gray_to_rgb", "preprocess", "backbone",
    "gap", "head_dense", "head_dropout", "predictions",
]


def _faces(count=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, 48, 48, 1)).astype("uint8")


@pytest.mark.parametrize("backbone", models.BACKBONES)
def test_every_backbone_builds_with_the_contract_structure(backbone):
    model = models.build_model(backbone, img_size=32, weights=None, head_units=16, seed=0)
    assert [layer.name for layer in model.layers] == CONTRACT_LAYERS
    assert tuple(model.input_shape) == (None, 48, 48, 1)
    assert tuple(model.output_shape) == (None, len(CLASS_NAMES))
    assert model.get_layer("predictions").dtype_policy.compute_dtype == "float32"
    assert model.get_layer("head_dense").units == 16
    assert tuple(model.get_layer("backbone").input_shape) == (None, 32, 32, 3)
    assert model.class_names == CLASS_NAMES
    probabilities = model.predict(_faces(), verbose=0)
    assert probabilities.shape == (3, 7)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    gradcam_layer = model.get_layer("backbone").get_layer(gradcam.default_gradcam_layer(model))
    assert len(gradcam_layer.output.shape) == 4


@pytest.mark.parametrize("backbone", models.BACKBONES)
def test_in_model_preprocessing_equals_the_backbones_preprocess_input(backbone):
    import keras

    model = models.build_model(backbone, img_size=48, weights=None, augment=False)
    to_preprocessed = keras.Model(model.input, model.get_layer("preprocess").output)
    gray = _faces(count=2, seed=1)
    ours = np.asarray(to_preprocessed.predict(gray, verbose=0))

    rgb = np.repeat(gray.astype("float32"), 3, axis=-1)
    application_module = {
        "vgg16": keras.applications.vgg16,
        "resnet50": keras.applications.resnet50,
        "efficientnetb0": keras.applications.efficientnet,
    }.get(backbone)
    expected = application_module.preprocess_input(rgb.copy()) if application_module else rgb / 255.0
    assert ours.shape == expected.shape == (2, 48, 48, 3)
    np.testing.assert_allclose(ours, np.asarray(expected), atol=1e-4)


def test_caffe_preprocessing_subtracts_the_bgr_means_on_gray_faces():
    import keras

    constant = np.full((1, 48, 48, 1), 100, dtype="uint8")
    model = models.build_model("vgg16", img_size=48, weights=None, augment=False)
    out = keras.Model(model.input, model.get_layer("preprocess").output).predict(constant, verbose=0)
    np.testing.assert_allclose(out[0, 0, 0], 100.0 - np.array(models.CAFFE_BGR_MEANS), atol=1e-4)


def test_saved_model_loads_with_plain_keras_and_predicts_identically(tmp_path):
    # A pretrained backbone is saved and reloaded in the BatchNorm test below.
    import keras

    model = models.build_model("small_cnn", img_size=32, weights=None, seed=0)
    faces = _faces(count=4)
    expected = model.predict(faces, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # safe_mode stays on
    np.testing.assert_allclose(loaded.predict(faces, verbose=0), expected, atol=1e-6)
    assert [layer.name for layer in loaded.layers] == CONTRACT_LAYERS


def _numpy(variable):
    import keras

    return np.array(keras.ops.convert_to_numpy(variable), copy=True)


def test_pretrained_backbone_batchnorm_stays_in_inference_mode_also_after_reload(tmp_path):
    import keras

    model = models.build_model("resnet50", img_size=32, weights=None, head_units=8, seed=0)
    # Fine-tuning a whole stage that contains BatchNorm layers: their statistics must not move.
    training.unfreeze_top(model.get_layer("backbone"), ("conv5",))
    backbone = model.get_layer("backbone")
    faces, labels = _faces(count=4), keras.utils.to_categorical(np.arange(4), 7)

    def fit_one_step(net):
        net.compile(optimizer="sgd", loss="categorical_crossentropy")
        net.fit(faces, labels, epochs=1, batch_size=4, verbose=0)

    statistics = {name: _numpy(backbone.get_layer(name).moving_mean) for name in ("conv1_bn", "conv5_block3_3_bn")}
    kernel_before = _numpy(backbone.get_layer("conv5_block3_3_conv").kernel)
    fit_one_step(model)
    assert not np.allclose(_numpy(backbone.get_layer("conv5_block3_3_conv").kernel), kernel_before)
    for name, before in statistics.items():
        np.testing.assert_array_equal(_numpy(backbone.get_layer(name).moving_mean), before)

    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    loaded_backbone = loaded.get_layer("backbone")
    assert not loaded_backbone.get_layer("conv5_block3_3_bn").trainable
    fit_one_step(loaded)
    for name, before in statistics.items():
        np.testing.assert_array_equal(_numpy(loaded_backbone.get_layer(name).moving_mean), before)


def test_small_cnn_learns_its_batchnorm_statistics():
    import keras

    model = models.build_model("small_cnn", weights=None, seed=0)
    batch_norm = model.get_layer("backbone").get_layer("stage1_conv1_bn")
    before = _numpy(batch_norm.moving_mean)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    model.fit(_faces(count=4), keras.utils.to_categorical(np.arange(4), 7), epochs=1, batch_size=4, verbose=0)
    assert not np.allclose(_numpy(batch_norm.moving_mean), before)


def test_small_cnn_is_small():
    model = models.build_model("small_cnn", weights=None)
    assert model.count_params() <= 2_000_000


@pytest.mark.parametrize(("img_size", "kernel"), [(48, 3), (32, 2), (16, 1)])
def test_small_cnn_ends_in_one_position_so_pooling_keeps_the_layout(img_size, kernel):
    model = models.build_model("small_cnn", img_size=img_size, weights=None, seed=0)
    spatial_conv = model.get_layer("backbone").get_layer("spatial_conv")
    assert spatial_conv.kernel_size == (kernel, kernel)
    assert tuple(model.get_layer("backbone").output.shape) == (None, 1, 1, 256)


def test_offline_imagenet_weights_error_names_file_folder_and_way_out(tmp_path, monkeypatch):
    from keras.src.utils import file_utils

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- no network")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    with pytest.raises(models.WeightsUnavailableError) as caught:
        models.build_model("vgg16", img_size=32, weights="imagenet")
    message = str(caught.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "keras-home" / "models") in message
    assert "weights=None" in message
    assert isinstance(caught.value, OSError)  # the CLI reports OSErrors as one clear line


def _no_network(monkeypatch):
    from keras.src.utils import file_utils

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- no network")

    monkeypatch.setattr(file_utils, "get_file", no_network)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No network, an empty Keras cache, no Kaggle input and no FER_WEIGHTS_DIR."""
    _no_network(monkeypatch)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.delenv(models.WEIGHTS_DIR_VARIABLE, raising=False)
    monkeypatch.setattr(models, "KAGGLE_INPUT_DIR", tmp_path / "kaggle" / "input")


def _assert_same_weights(expected_model, actual_model):
    for expected, actual in zip(expected_model.get_weights(), actual_model.get_weights(), strict=True):
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize("backbone", ["vgg16", "resnet50"])
def test_imagenet_weights_come_from_the_weights_dir_offline(backbone, tmp_path, monkeypatch, offline):
    source = write_notop_weights(tmp_path / "weights", backbone)
    monkeypatch.setenv(models.WEIGHTS_DIR_VARIABLE, str(tmp_path / "weights"))
    model = models.build_model(backbone, img_size=32, weights="imagenet")
    _assert_same_weights(source, model.get_layer("backbone"))


def test_imagenet_weights_are_found_in_a_kaggle_input_dataset(tmp_path, monkeypatch, offline):
    folder = models.KAGGLE_INPUT_DIR / "keras-pretrained-models" / "vgg16"
    source = write_notop_weights(folder, "vgg16")
    assert models.find_pretrained_weights("vgg16") == folder / models.get_spec("vgg16").weights_file
    _assert_same_weights(source, models.build_backbone("vgg16", 32, "imagenet"))


def test_weights_dir_comes_before_kaggle_input_and_the_keras_cache(tmp_path, monkeypatch, offline):
    name = models.get_spec("vgg16").weights_file
    for folder in (models.KAGGLE_INPUT_DIR / "set", models.keras_cache_dir(), tmp_path / "mine"):
        folder.mkdir(parents=True)
        (folder / name).write_bytes(b"stand-in")
    assert models.find_pretrained_weights("vgg16") == models.KAGGLE_INPUT_DIR / "set" / name
    monkeypatch.setenv(models.WEIGHTS_DIR_VARIABLE, str(tmp_path / "mine"))
    assert models.find_pretrained_weights("vgg16") == tmp_path / "mine" / name
    assert models.find_pretrained_weights("small_cnn") is None


def test_a_wrong_weights_file_is_a_clear_error(tmp_path, monkeypatch, offline):
    # ResNet50's file under VGG16's name: the layer structure does not fit.
    resnet = write_notop_weights(tmp_path / "other", "resnet50")
    del resnet
    folder = tmp_path / "weights"
    folder.mkdir()
    (tmp_path / "other" / models.get_spec("resnet50").weights_file).rename(folder / models.get_spec("vgg16").weights_file)
    monkeypatch.setenv(models.WEIGHTS_DIR_VARIABLE, str(folder))
    with pytest.raises(ValueError) as caught:
        models.build_model("vgg16", img_size=32, weights="imagenet")
    message = str(caught.value)
    assert str(folder / models.get_spec("vgg16").weights_file) in message and "not a usable vgg16 weights file" in message
    # A truncated or non-HDF5 file as well.
    (folder / models.get_spec("vgg16").weights_file).write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError, match="not a usable vgg16 weights file"):
        models.build_model("vgg16", img_size=32, weights="imagenet")


def test_offline_error_lists_every_place_it_looked(tmp_path, monkeypatch, offline):
    monkeypatch.setenv(models.WEIGHTS_DIR_VARIABLE, str(tmp_path / "mine"))
    with pytest.raises(models.WeightsUnavailableError) as caught:
        models.build_model("resnet50", img_size=32, weights="imagenet")
    message = str(caught.value)
    for place in (tmp_path / "mine", models.KAGGLE_INPUT_DIR, models.keras_cache_dir()):
        assert str(place) in message
    assert models.WEIGHTS_DIR_VARIABLE in message


def test_local_weights_file_is_loaded_into_the_backbone(tmp_path):
    source = models.build_backbone("efficientnetb0", 32, weights=None)
    path = tmp_path / "effnet.weights.h5"
    source.save_weights(path)
    model = models.build_model("efficientnetb0", img_size=32, weights=path)
    for expected, actual in zip(source.get_weights(), model.get_layer("backbone").get_weights()):
        np.testing.assert_array_equal(actual, expected)


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown backbone"):
        models.build_model("alexnet", weights=None)
    with pytest.raises(ValueError, match="at least 32"):
        models.build_model("resnet50", img_size=24, weights=None)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        models.build_model("vgg16", img_size=32, weights=tmp_path / "missing.h5")
    with pytest.raises(ValueError, match="from scratch"):
        models.build_model("small_cnn", weights="imagenet")
    with pytest.raises(ValueError, match="class names"):
        models.build_model("small_cnn", weights=None, num_classes=5)


def test_default_sizes_and_weights():
    assert models.default_img_size("vgg16", on_gpu=False) == 48
    assert models.default_img_size("vgg16", on_gpu=True) == 96
    assert models.default_img_size("efficientnetb0", on_gpu=True) == 160
