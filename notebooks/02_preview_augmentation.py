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
# small rotation, zoom or shift, a contrast change. In `fer_utils` these transforms are Keras layers
# *inside* the model, so they run on the accelerator, act only during training (`fit`), and pass
# faces through unchanged at evaluation and prediction time.
#
# After augmentation the model resizes the 48x48 face to the backbone's input size, repeats the gray
# channel three times, and applies the backbone's own `preprocess_input`. This notebook shows each
# step on the same faces.

# %% [markdown]
# ## Setup

# %% tags=["parameters"]
import os

# Smoke mode (FER_SMOKE=1) is what CI and `make demo` use: demo data and tiny settings.
SMOKE = os.environ.get("FER_SMOKE", "") == "1"
DATA = "demo" if SMOKE else None  # None: find FER2013 (FER_DATA_DIR, Kaggle input, ./data/fer2013, kagglehub), else demo
SEED = 42
BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")  # "tensorflow", "jax" or "torch": set by the setup cell before Keras loads
RUNS_ON_DRIVE = False  # Colab only: keep run folders on Google Drive (mounted when True); a Colab VM forgets them
DRAWS = 5  # augmented versions shown per face
BACKBONES_SHOWN = ["vgg16", "resnet50", "efficientnetb0"]
IMG_SIZE = 96  # the input size to preview (the GPU default for VGG16 and ResNet50)

# %%
import sys

# On Colab and Kaggle, install fer_utils from the repository. --no-deps keeps the platform's own
# TensorFlow, Keras, NumPy and CUDA stack; the second line adds the face detector (and the webcam
# widget library) they may lack.
# notebook.setup then checks every library against fer_utils' supported range.
if "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
    # %pip install --quiet --no-deps "git+https://github.com/fer-notebooks/fer-notebooks.git"
    # %pip install --quiet "mtcnn>=1.0" "lz4>=4.3" "anywidget>=0.9.21"

from fer_utils import notebook
from fer_utils import augmentation, data, models, plots

context = notebook.setup(data=DATA, seed=SEED, runs_on_drive=RUNS_ON_DRIVE, backend=BACKEND)

# %% [markdown]
# ## Data
#
# One training face per class.

# %%
# NBVAL_CHECK_OUTPUT
train = data.load_dataset(context.data_path)["train"]
first_of_each_class = [int((train.labels == label).argmax()) for label in range(len(train.class_names))]
faces = train.images[first_of_each_class]
print("faces:", faces.shape, "classes:", ", ".join(train.class_names))

# %% [markdown]
# ## The augmentation pipeline
#
# These are the strengths used in training (`fer_utils.augmentation.AugmentationConfig`); rotation, zoom
# and shift are fractions (0.05 of a full turn is 18 degrees; 0.1 of the image is about 5 pixels).

# %%
# NBVAL_CHECK_OUTPUT
import pandas as pd

config = augmentation.AugmentationConfig()
pd.Series(config.to_dict(), name="strength").to_frame()

# %%
draws = augmentation.augment_samples(faces, config, draws=DRAWS, seed=SEED)
rows = {"original": faces}
rows.update({f"draw {index + 1}": draw for index, draw in enumerate(draws)})
plots.plot_image_rows({label: images for label, images in rows.items()}, title="Each column is one face: original, then augmented draws")

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
plots.plot_image_rows(single, title="One transform at a time (six draws each)")

# %% [markdown]
# ## What the backbone receives
#
# VGG16 and ResNet50 were trained on ImageNet with Caffe-style preprocessing: RGB converted to BGR and
# the ImageNet channel means subtracted (no scaling). EfficientNet rescales inside itself, so its
# `preprocess_input` is a pass-through. The model does this internally; below is the output of its
# `preprocess` layer for each backbone (built with `weights=None`: preprocessing does not depend on
# the weights).

# %%
# NBVAL_CHECK_OUTPUT
inputs_by_backbone = {}
for backbone in BACKBONES_SHOWN:
    model = models.build_model(backbone, img_size=IMG_SIZE, weights=None)
    inputs_by_backbone[backbone] = models.model_inputs(model, faces)
ranges = pd.DataFrame(
    {backbone: {"shape": str(values.shape[1:]), "min": round(float(values.min()), 2), "max": round(float(values.max()), 2), "channel means": str(values.mean(axis=(0, 1, 2)).round(1))}
     for backbone, values in inputs_by_backbone.items()}
).T
ranges

# %%
plots.plot_image_rows(
    {backbone: values[..., 0] for backbone, values in inputs_by_backbone.items()},
    title=f"First channel of the backbone input at {IMG_SIZE} px (each image on its own grey scale)",
    value_range=None,
)

# %% [markdown]
# ## Conclusion

# %%
from IPython.display import Markdown

vgg_range = inputs_by_backbone["vgg16"] if "vgg16" in inputs_by_backbone else next(iter(inputs_by_backbone.values()))
Markdown(
    f"Training sees {DRAWS} different versions of each face in as many epochs, from "
    f"{len(augmentation.single_transforms(config))} transforms. Backbone inputs are "
    f"{IMG_SIZE}x{IMG_SIZE}x3; for VGG16 they span {vgg_range.min():.0f} to {vgg_range.max():.0f} "
    "(mean-subtracted, not scaled), exactly what `keras.applications.vgg16.preprocess_input` produces "
    "(a unit test checks this for every backbone). Next: [03_train_vgg16](03_train_vgg16.ipynb)."
)
