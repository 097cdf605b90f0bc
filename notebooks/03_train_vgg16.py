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
# # Training VGG16 on FER2013
#
# **Goal:** train VGG16 on FER2013 by transfer learning (frozen backbone + head, then fine-tuning) and save the run for comparison.
#
# <a href="https://colab.research.google.com/github/fer-notebooks/fer-notebooks/blob/main/notebooks/03_train_vgg16.ipynb" target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>
# <a href="https://kaggle.com/kernels/welcome?src=https://github.com/fer-notebooks/fer-notebooks/blob/main/notebooks/03_train_vgg16.ipynb" target="_parent"><img src="https://kaggle.com/static/images/open-in-kaggle.svg" alt="Open In Kaggle"/></a>

# %% [markdown]
# ## Introduction
#
# The starting design: VGG16 with ImageNet weights, **frozen**, followed by a small head
# (GlobalAveragePooling -> Dense(128, relu) -> Dropout -> Dense(7, softmax)), trained with augmentation.
# Then the first piece of future work: **fine-tuning** VGG16's last convolutional block (`block5`) at a
# low learning rate.
#
# Why two phases? A freshly initialised head produces large, random gradients; letting them reach the
# pretrained convolutions would wreck features learned on 1.2 million images. So the head is trained
# first, on frozen features, and only then are the top layers unfrozen.
#
# **A fast path for phase 1.** While the backbone is frozen its output for a given face never changes,
# so `fer_utils` computes the features of the training and validation faces **once** and trains the head
# on them, instead of pushing every image through VGG16 at every epoch (`HEAD_MODE = "images"` is the
# per-epoch image path: augmented images through the frozen backbone each epoch). The trained head is then put
# back on the backbone, and phase 2 trains on images with augmentation.

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
BACKBONE = "vgg16"
WEIGHTS = "imagenet"  # "imagenet", None (random initialisation) or a weights file
WEIGHTS_DIR = None  # a folder holding Keras's "notop" weights files (e.g. an attached Kaggle dataset); None: /kaggle/input, the Keras cache, then download
IMG_SIZE = None  # None: 48 px on CPU, 96 px on GPU (see fer_utils.models.SPECS)
EPOCHS_HEAD = 15
EPOCHS_FINETUNE = 15
BATCH_SIZE = 64
HEAD_MODE = "cached"  # "cached": backbone features computed once; "images": augmented images through the frozen backbone every epoch
HEAD_BATCHNORM = False  # False: GAP -> Dense(128) -> Dropout -> softmax; True standardises the pooled features first
DROPOUT = 0.5
LABEL_SMOOTHING = 0.1
CLASS_WEIGHTS = "none"  # "none": plain cross-entropy (FER2013 is scored by accuracy); "balanced": more rare-class recall, less accuracy
PATIENCE = 5  # epochs without validation improvement before a phase stops
VAL_FRACTION = 0.1
OVERWRITE = False  # True retrains even when the run folder already holds a finished run

if SMOKE:
    # CI has no internet, so no ImageNet weights: the backbone is random. Random features are tiny
    # and badly scaled, so the head standardises them and trains longer on the (cheap) cached
    # features; one fine-tuning epoch still exercises phase 2.
    WEIGHTS, HEAD_BATCHNORM, DROPOUT, LABEL_SMOOTHING, PATIENCE = None, True, 0.0, 0.0, 0
    EPOCHS_HEAD, EPOCHS_FINETUNE, BATCH_SIZE, VAL_FRACTION, OVERWRITE = 60, 1, 32, 0.2, True

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
from fer_utils import data, evaluation, plots, report, training, training_notebook

context = notebook.setup(data=DATA, seed=SEED, runs_on_drive=RUNS_ON_DRIVE, weights_dir=WEIGHTS_DIR, backend=BACKEND)

# %% [markdown]
# ImageNet weights come from a local copy of Keras's "notop" file when there is one (`WEIGHTS_DIR`,
# any folder under `/kaggle/input`, the Keras cache), else Keras downloads them. Offline and without
# a copy, the next cell says so and falls back, visibly, to random weights, so the notebook still
# runs end to end.

# %%
WEIGHTS = notebook.resolve_weights(BACKBONE, WEIGHTS)
print(f"weights: {WEIGHTS or 'random initialisation'}")

# %% [markdown]
# ## Data
#
# The validation split is carved from `train`, stratified and seeded; it decides early stopping and
# which epoch's weights are kept. Only the `train` split is used here (of a folder layout, the only one
# decoded); the test split is read once, at the end, in [05_compare_models](05_compare_models.ipynb).

# %%
# NBVAL_CHECK_OUTPUT
training_data = training.training_splits(context.data, val_fraction=VAL_FRACTION, seed=SEED)
train, validation = training_data.train, training_data.val
data.dataset_summary({"train": train, "validation": validation})

# %% [markdown]
# ## Configuration
#
# `training.default_config` holds the recommended settings per backbone; the parameters above
# override some of them. Every value is written to the run's `config.json`.

# %%
# NBVAL_CHECK_OUTPUT
config = training.default_config(
    BACKBONE, weights=WEIGHTS, img_size=IMG_SIZE, epochs_head=EPOCHS_HEAD, epochs_finetune=EPOCHS_FINETUNE,
    batch_size=BATCH_SIZE, head_mode=HEAD_MODE, head_batchnorm=HEAD_BATCHNORM, dropout=DROPOUT,
    label_smoothing=LABEL_SMOOTHING, class_weights=CLASS_WEIGHTS, patience=PATIENCE, val_fraction=VAL_FRACTION,
    seed=SEED,
)
print(training_notebook.describe_config(config))

# %% [markdown]
# ## Train
#
# `training.train` (the function `python -m fer_utils train` calls too) runs both phases, one progress bar and one summary line per phase (the
# per-epoch numbers go to the run's `history.csv` and the curves below), and writes the run folder
# atomically. It is **resumable**: if the session dies, running this cell again continues from the last
# finished epoch (and a finished run is simply loaded, unless `OVERWRITE` is true).

# %%
run = training_notebook.train(context, training_data, config, overwrite=OVERWRITE)

# %% [markdown]
# ## The model
#
# The saved model takes raw 48x48 pixels; everything else happens inside it.

# %%
# NBVAL_CHECK_OUTPUT
print(training_notebook.describe_model(run.model))

# %% [markdown]
# ## Training curves
#
# The dashed line marks the switch from the head phase to fine-tuning.

# %%
plots.plot_training_curves(run.history, title=f"{BACKBONE}: training and validation")

# %%
training_notebook.phase_table(run.history)

# %% [markdown]
# ## Evaluate on the validation split
#
# These numbers steer model selection, so they are slightly optimistic; the unbiased test-set numbers
# come once, in [05_compare_models](05_compare_models.ipynb).

# %%
result = evaluation.evaluate_model(run, validation, n_boot=0)
print(report.format_report(result))

# %%
plots.plot_confusion_matrices({BACKBONE: result.confusion}, validation.class_names)

# %% [markdown]
# ### Did it learn?
#
# Chance is not 1/7 here: a model that ignores the face but predicts each class as often as this one
# does would score `chance_accuracy` (always answering the largest class scores exactly that). A
# one-sided binomial test says whether the observed accuracy beats it. In smoke mode this is the
# regression check of the whole pipeline: it fails the notebook (and CI) when the model learned nothing.

# %%
print(training_notebook.check_learned(validation, result, smoke=SMOKE))

# %% [markdown]
# ## Where the run went

# %%
# NBVAL_CHECK_OUTPUT
training_notebook.run_files(run)

# %% [markdown]
# ## Conclusion

# %%
from IPython.display import Markdown

Markdown(training_notebook.conclusion(run, result, smoke=SMOKE))
