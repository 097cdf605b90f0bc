"""Backbone registry and the one model builder: raw FER pixels in, class probabilities out.

Every model has the same structure (layer names are a contract other modules rely on):

    pixels (48, 48, 1) float32, values 0..255
      -> augmentation   keras.Sequential of random layers, identity outside training
      -> resize         keras.layers.Resizing to the backbone's input size
      -> gray_to_rgb    the gray channel repeated three times
      -> preprocess     exactly the backbone's `keras.applications.<name>.preprocess_input`
      -> backbone       a nested keras.Model; pretrained ones keep BatchNorm frozen (inference mode)
      -> gap            GlobalAveragePooling2D
      -> head_dense     Dense(head_units, relu)
      -> head_dropout   Dropout
      -> predictions    Dense(num_classes, softmax), float32 even under mixed precision

Built-in Keras layers are used, plus one registered augmentation layer (`augmentation.RandomAffine`,
identity at inference), so a saved `.keras` file loads with `loading.load_model` or, after
`fer_utils.augmentation.random_affine_class()`, with plain `keras.models.load_model(path)` (safe mode
on), and predicts from raw pixels: no preprocessing step outside the model can drift between training
and inference.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from fer_utils import CLASS_NAMES
from fer_utils.augmentation import AugmentationConfig

# FER2013 images are 48x48 grayscale; every model takes them as they are.
INPUT_SHAPE = (48, 48, 1)
NO_AUGMENTATION = AugmentationConfig(flip=False, rotation=0.0, zoom=0.0, translation=0.0, contrast=0.0)

# keras.applications' "caffe" preprocessing (VGG16, ResNet50) flips RGB to BGR and subtracts
# these ImageNet channel means (in BGR order). On a gray image repeated to three identical
# channels the flip changes nothing, so only the mean subtraction remains.
CAFFE_BGR_MEANS = (103.939, 116.779, 123.68)

# Where `weights="imagenet"` looks for local copies of the Keras weights files before downloading.
WEIGHTS_DIR_VARIABLE = "FER_WEIGHTS_DIR"
KAGGLE_INPUT_DIR = Path("/kaggle/input")


class WeightsUnavailableError(OSError):
    """Pretrained weights were asked for but cannot be found or downloaded (e.g. offline)."""


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """One backbone: its `keras.applications` constructor (None: small_cnn), preprocessing ("caffe":
    ImageNet BGR means subtracted; "none": EfficientNet rescales inside itself; "unit": pixels / 255),
    default input size on a CPU / GPU, smallest input, the layer-name prefixes fine-tuning unfreezes,
    Keras's ImageNet "notop" weights file, and whether it is pretrained at all."""

    name: str
    application: str | None
    preprocessing: str
    cpu_img_size: int
    gpu_img_size: int
    min_img_size: int
    finetune_prefixes: tuple[str, ...]
    weights_file: str | None
    pretrained: bool = True


# GPU image sizes: 96 px for VGG16/ResNet50 upsamples FER's 48 px faces 2x, so the deepest
# feature map is 3x3 instead of 1x1 (at 48 px VGG16's block5 sees the whole face as one cell),
# at a quarter of the 224 px cost, which keeps an epoch on a T4 around a minute. EfficientNetB0
# is cheaper per pixel and was tuned on larger inputs, so it gets 160 px.
SPECS = {
    spec.name: spec for spec in (
        # name, application, preprocessing, cpu / gpu / min img size, finetune_prefixes, weights_file
        BackboneSpec("vgg16", "VGG16", "caffe", 48, 96, 32, ("block5",),
                     "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        BackboneSpec("resnet50", "ResNet50", "caffe", 48, 96, 32, ("conv5",),
                     "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        BackboneSpec("efficientnetb0", "EfficientNetB0", "none", 48, 160, 32, ("block7", "top"),
                     "efficientnetb0_notop.h5"),
        BackboneSpec("small_cnn", None, "unit", 48, 48, 16, (), None, pretrained=False),
    )
}

BACKBONES = tuple(SPECS)


def get_spec(backbone: str) -> BackboneSpec:
    """Return the registry entry of `backbone`, or raise ValueError listing the known names."""
    key = str(backbone).lower()
    if key not in SPECS:
        raise ValueError(f"Unknown backbone '{backbone}'. Choose one of: {', '.join(BACKBONES)}.")
    return SPECS[key]


def default_img_size(backbone: str, on_gpu: bool | None = None) -> int:
    """Default input size of `backbone`: 48 px on a CPU, the spec's GPU size on a GPU.

    `on_gpu=None` asks the backend whether a GPU is visible.
    """
    spec = get_spec(backbone)
    if on_gpu is None:
        from fer_utils import backend

        on_gpu = bool(backend.gpu_names())
    return spec.gpu_img_size if on_gpu else spec.cpu_img_size


def keras_cache_dir() -> Path:
    """The folder where Keras keeps downloaded weights: `$KERAS_HOME/models` or `~/.keras/models`.

    Mirrors Keras's own rule, including its fallback to /tmp/.keras when the home folder is
    not writable.
    """
    if "KERAS_HOME" in os.environ:
        base = Path(os.environ["KERAS_HOME"])
    else:
        home = Path(os.path.expanduser("~"))
        base = (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras"
    return base.expanduser() / "models"


def build_model(
    backbone: str,
    num_classes: int | None = None,
    img_size: int | None = None,
    weights: str | os.PathLike | None = "imagenet",
    head_units: int = 128,
    dropout: float = 0.5,
    augment: bool = True,
    seed: int | None = None,
    class_names: tuple[str, ...] | list[str] = CLASS_NAMES,
    augmentation=None,
    head_batchnorm: bool = False,
):
    """The recipe's model in one call (the command line, tests, the shipped model): raw 48x48x1
    pixels (0..255) -> `input_block` -> `build_backbone(backbone, img_size, weights)` -> the head
    (GAP -> optional BatchNorm "head_norm" -> Dense(head_units, relu) -> Dropout -> softmax).

    `img_size` None: 48 px on a CPU, the spec's GPU size on a GPU. `augmentation` is an
    `AugmentationConfig` (ignored when `augment` is False). `head_batchnorm` standardises the pooled
    features, which random-weight backbones (smoke runs) need to learn in a few epochs. The class
    names are stored as `model.class_names`. Returns an uncompiled `keras.Model` with the layer names
    of the module docstring; raises ValueError (bad arguments), FileNotFoundError (a missing weights
    file) or WeightsUnavailableError (ImageNet weights neither local nor downloadable).
    """
    import keras

    spec = get_spec(backbone)
    class_names = tuple(str(name) for name in class_names)
    if num_classes is None:
        num_classes = len(class_names)
    if num_classes != len(class_names):
        raise ValueError(
            f"num_classes={num_classes} does not match the {len(class_names)} class names {class_names}. "
            "Pass class_names with one name per output."
        )
    img_size = int(img_size or default_img_size(spec.name))
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
    if head_units < 1:
        raise ValueError(f"head_units must be a positive integer, got {head_units}.")

    # The same steps notebooks 03 and 04 show cell by cell.
    pixels = keras.Input(shape=INPUT_SHAPE, name="pixels")
    x = input_block(pixels, spec.name, img_size, augmentation if augment else NO_AUGMENTATION, seed=seed)
    backbone_model = build_backbone(spec.name, img_size, weights)
    # small_cnn learns its BatchNorm statistics; a pretrained backbone keeps ImageNet's (see build_backbone).
    x = backbone_model(x, training=False) if spec.pretrained else backbone_model(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    if head_batchnorm:
        x = keras.layers.BatchNormalization(name="head_norm")(x)
    x = keras.layers.Dense(head_units, activation="relu", name="head_dense")(x)
    x = keras.layers.Dropout(dropout, seed=seed, name="head_dropout")(x)
    # float32 softmax: stable probabilities even when the rest runs in mixed precision.
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    model = keras.Model(pixels, outputs, name=f"fer_{spec.name}")
    model.class_names = class_names
    return model


def input_block(pixels, backbone: str, img_size: int, augmentation=None, seed: int | None = None):
    """Raw 48x48x1 pixels (0..255) -> what `backbone` expects, as layers inside the model.

    augmentation (random, identity outside training) -> resize to `img_size` -> gray to RGB ->
    the backbone's own preprocessing. Inside the model, so a saved model takes raw pixels and no
    preprocessing step outside it can drift between training and inference. `augmentation` is an
    `AugmentationConfig` (None: the defaults; `NO_AUGMENTATION`: none).
    """
    import keras

    from fer_utils import augmentation as augmentation_module

    spec = get_spec(backbone)
    if int(img_size) < spec.min_img_size:
        raise ValueError(
            f"img_size={img_size} is too small for {spec.name}: it needs at least {spec.min_img_size} px. "
            "Use 48 (FER's native size) or larger."
        )
    x = augmentation_module.build_augmentation(augmentation, seed=seed)(pixels)
    x = keras.layers.Resizing(int(img_size), int(img_size), interpolation="bilinear", name="resize")(x)
    x = keras.layers.Concatenate(axis=-1, name="gray_to_rgb")([x, x, x])
    return _preprocess_layer(spec)(x)


def check_weights(backbone: str, weights) -> None:
    """Raise ValueError / FileNotFoundError when `weights` cannot serve `backbone` (see `build_model`).

    Cheap (no Keras), so training checks it before writing anything.
    """
    spec = get_spec(backbone)
    if not spec.pretrained:
        if weights is not None:
            raise ValueError(
                f"{spec.name} is trained from scratch and has no pretrained weights; got weights={weights!r}. "
                "Pass weights=None (on the command line: --weights none)."
            )
        return
    if weights is not None and weights != "imagenet" and not Path(weights).expanduser().is_file():
        raise FileNotFoundError(
            f"Weights file '{Path(weights).expanduser()}' for {spec.name} does not exist. Pass weights='imagenet', "
            f"weights=None, or the path of a {spec.name} notop weights file such as {spec.weights_file}."
        )


def build_backbone(backbone: str, img_size: int, weights=None):
    """Return the nested feature extractor, named "backbone", for RGB inputs of `img_size` px.

    `weights` as in `build_model`. The result outputs a 4-D feature map (no pooling, no top).
    """
    import keras

    spec = get_spec(backbone)
    check_weights(spec.name, weights)
    input_shape = (img_size, img_size, 3)
    if not spec.pretrained:
        return _small_cnn(input_shape)

    constructor = getattr(keras.applications, spec.application)
    if weights is None:
        model = constructor(include_top=False, weights=None, input_shape=input_shape)
    elif weights == "imagenet":
        model = _imagenet_backbone(spec, constructor, input_shape)
    else:
        path = Path(weights).expanduser()
        model = constructor(include_top=False, weights=None, input_shape=input_shape)
        load_backbone_weights(model, path, spec)
    # The constructor's own name decides the weights file name (EfficientNet), so the backbone
    # is built under its default name and renamed afterwards.
    model.name = "backbone"
    # BatchNorm keeps its ImageNet statistics, also while the top blocks are fine-tuned: in Keras 3
    # a non-trainable BatchNormalization layer runs in inference mode whatever the training flag
    # (Keras's functional runtime passes the outer model's flag down to nested models, so
    # `training=False` at the call alone does not guarantee it). The flag is saved with the model.
    freeze_batch_norm(model)
    return model


def freeze_batch_norm(model) -> None:
    """Set `trainable=False` on every BatchNormalization layer of `model` (a flat backbone).

    In Keras 3 a non-trainable BatchNormalization layer normalises with its moving statistics
    and never updates them, whatever training flag it is called with.
    """
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def pretrained_weights_folders() -> list[Path]:
    """The folders searched, in order, for a backbone's ImageNet "notop" weights file.

    1. `$FER_WEIGHTS_DIR` (the training notebooks' `WEIGHTS_DIR` parameter sets it), when set;
    2. every folder below `/kaggle/input` (Kaggle sessions with Internet off attach the Keras
       weights as a dataset; see `find_pretrained_weights`);
    3. the Keras cache, `keras_cache_dir()`.
    """
    folders = []
    if os.environ.get(WEIGHTS_DIR_VARIABLE):
        folders.append(Path(os.environ[WEIGHTS_DIR_VARIABLE]).expanduser())
    folders.append(KAGGLE_INPUT_DIR)
    folders.append(keras_cache_dir())
    return folders


def find_pretrained_weights(backbone: str) -> Path | None:
    """The first local copy of `backbone`'s ImageNet notop file, or None when there is none.

    `$FER_WEIGHTS_DIR` and the Keras cache must hold the file itself (under Keras's exact file
    name); under `/kaggle/input` any folder may, since a dataset's own layout decides where it is.
    """
    spec = get_spec(backbone)
    if spec.weights_file is None:
        return None
    for folder in pretrained_weights_folders():
        if folder == KAGGLE_INPUT_DIR:
            found = _find_below(folder, spec.weights_file)
        else:
            found = folder / spec.weights_file if (folder / spec.weights_file).is_file() else None
        if found is not None:
            return found
    return None


def _find_below(root: Path, file_name: str, max_depth: int = 6) -> Path | None:
    """The first file called `file_name` in `root` or its subfolders (sorted, at most `max_depth` deep)."""
    if not root.is_dir():
        return None
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        if len(Path(folder).relative_to(root).parts) >= max_depth:
            subfolders.clear()
        if file_name in files:
            return Path(folder) / file_name
    return None


def _imagenet_backbone(spec: BackboneSpec, constructor, input_shape):
    """Build a pretrained backbone from a local weights file, else from Keras's download.

    Keras verifies the hash of the files it downloads; a local copy is loaded here instead, with
    every layer's shapes checked, so a wrong or damaged file is reported by name.
    """
    local_file = find_pretrained_weights(spec.name)
    if local_file is not None:
        model = constructor(include_top=False, weights=None, input_shape=input_shape)
        load_backbone_weights(model, local_file, spec)
        return model
    try:
        return constructor(include_top=False, weights="imagenet", input_shape=input_shape)
    except Exception as error:  # Keras raises a bare Exception when a download fails.
        looked_in = "; ".join(
            str(folder) + (" (and its subfolders)" if folder == KAGGLE_INPUT_DIR else "")
            for folder in pretrained_weights_folders()
        )
        raise WeightsUnavailableError(
            f"Could not load the ImageNet weights of {spec.name}: no file {spec.weights_file} in {looked_in}, "
            f"and downloading it failed ({type(error).__name__}: {error}). "
            f"Either put {spec.weights_file} in a folder and set {WEIGHTS_DIR_VARIABLE} to it (on Kaggle: attach "
            f"a dataset holding it), or place it in the Keras cache folder {keras_cache_dir()}, "
            f"or pass a local weights file (weights='path/to/{spec.weights_file}', --weights PATH), "
            "or train from random weights with weights=None (--weights none)."
        ) from error


def load_backbone_weights(model, path: Path, spec: BackboneSpec) -> None:
    """Load a weights file into a freshly built backbone; a file that does not fit is a ValueError.

    Keras checks the layer count and every weight's shape while loading, so a file of another
    backbone or a truncated download fails here rather than training on garbage.
    """
    try:
        model.load_weights(str(path))
    except (ValueError, OSError, KeyError, TypeError) as error:
        raise ValueError(
            f"'{path}' is not a usable {spec.name} weights file ({type(error).__name__}: {error}). "
            f"Replace it with Keras's {spec.weights_file} (ImageNet, include_top=False), "
            f"or remove it to let Keras download the weights, or pass weights=None (--weights none)."
        ) from error


def _preprocess_layer(spec: BackboneSpec):
    """The built-in layer reproducing the backbone's `preprocess_input` on 3 identical channels."""
    import keras

    if spec.preprocessing == "caffe":
        return keras.layers.Normalization(mean=list(CAFFE_BGR_MEANS), variance=[1.0, 1.0, 1.0], name="preprocess")
    if spec.preprocessing == "none":
        return keras.layers.Identity(name="preprocess")
    if spec.preprocessing == "unit":
        return keras.layers.Rescaling(1.0 / 255.0, name="preprocess")
    raise ValueError(f"Unknown preprocessing '{spec.preprocessing}' in the spec of {spec.name}.")


def _small_cnn(input_shape):
    """A compact VGG-style network for FER, trained from scratch; cheap enough for a CPU.

    Each face is standardised on its own first (about +4 points of test accuracy in a short run:
    FER's brightness and contrast vary a lot). 3x3 convolutions with BatchNorm at 48, 24, 12 and 6 px,
    each stage pooled 2x2, then a convolution as large as the last map, which keeps where a feature
    sits (global pooling would average a mouth corner and a brow alike; +1 point). ~1.75M parameters.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="backbone_input")
    x = layers.LayerNormalization(axis=(1, 2, 3), center=False, scale=False, name="image_norm")(inputs)
    for stage, (filters, convolutions) in enumerate(SMALL_CNN_STAGES, start=1):
        for index in range(1, convolutions + 1):
            x = _conv_bn_relu(x, filters, 3, "same", f"stage{stage}_conv{index}")
        x = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
    # Each stage halves the size (rounding down), so the last map is input_size // 16 pixels wide.
    final_size = input_shape[0] // 2 ** len(SMALL_CNN_STAGES)
    x = _conv_bn_relu(x, SMALL_CNN_STAGES[-1][0], final_size, "valid", "spatial_conv")
    return keras.Model(inputs, x, name="backbone")


def _conv_bn_relu(x, filters: int, kernel_size: int, padding: str, name: str):
    """Convolution (no bias) -> BatchNormalization -> ReLU, the layers named after `name`."""
    from keras import layers

    x = layers.Conv2D(filters, kernel_size, padding=padding, use_bias=False, name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


# (filters, number of 3x3 convolutions) per stage of small_cnn; each stage halves the resolution.
SMALL_CNN_STAGES = ((32, 1), (64, 1), (128, 2), (256, 2))


def trainable_summary(model) -> dict[str, int]:
    """Count trainable and frozen weights (scalars) of `model`: {"trainable": n, "frozen": m}."""
    import numpy as np

    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    frozen = sum(int(np.prod(weight.shape)) for weight in model.non_trainable_weights)
    return {"trainable": trainable, "frozen": frozen}


def model_inputs(model, images, batch_size: int = 256):
    """What the backbone receives for `images`: the output of the "preprocess" layer (inference mode).

    That is the raw pixels after resizing, grayscale-to-RGB and the backbone's own preprocessing,
    shape (N, img_size, img_size, 3) float32.
    """
    import keras

    inputs_model = keras.Model(model.input, model.get_layer("preprocess").output)
    return predict(inputs_model, images, batch_size=batch_size)


def predict(model, images, batch_size: int = 256, tta: bool = False, compiled: bool = False) -> np.ndarray:
    """`model`'s output for raw `images` (N, H, W, C), in inference mode, batch by batch, as float64.

    The one predict function of the package. With `tta=True` (test-time augmentation) the result
    is the mean of the outputs on the images and on their mirror images (faces are roughly
    symmetric, so both are views of the same expression), computed in one pass.

    Keras models are called directly (eagerly) rather than through `model.predict`, which builds a
    `tf.data` pipeline per call and traces a graph per model (TensorFlow warns about "retracing"
    when several models are scored in a row). `compiled=True` is for one model called again and
    again on a few images (video frames, the webcam): `predict_on_batch`, about 10x faster there,
    with each chunk padded to a power of two so it is traced for a handful of shapes only.
    Anything else with a Keras-style `predict` (wrappers, test doubles) is asked through it.
    """
    import keras

    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be a batch of shape (N, height, width, channels); got {images.shape}.")
    if tta:
        both = predict(model, np.concatenate([images, images[:, :, ::-1, :]]), batch_size, compiled=compiled)
        return (both[: len(images)] + both[len(images):]) / 2.0
    if isinstance(model, keras.Model) and len(images) == 0:
        return np.zeros((0, *model.output_shape[1:]), np.float64)
    if not isinstance(model, keras.Model):
        return np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float64)
    outputs = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        if compiled:
            padded = np.zeros((1 << (len(chunk) - 1).bit_length(), *chunk.shape[1:]), np.float32)
            padded[: len(chunk)] = chunk
            outputs.append(np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(padded)))[: len(chunk)])
        else:
            outputs.append(keras.ops.convert_to_numpy(model(chunk, training=False)))
    return np.concatenate(outputs).astype(np.float64)
