"""Write the notebook series from the cell definitions below (the notebooks' source of truth).

    python tools/build_notebooks.py      # rewrite notebooks/NN_*.ipynb (outputs cleared)
    make notebooks                       # then execute them in place on demo data, for nbval

Each notebook follows the same frame: a title, a one-line goal and Open-in-Colab/Kaggle badges; an
introduction; one `parameters` cell (papermill tag) whose smoke switch is read from the environment;
one setup cell; then short cells calling `fer_utils`, with narrative markdown in between, and a
conclusion computed from the results. Cells whose output is deterministic on the demo data carry
`# NBVAL_CHECK_OUTPUT`, so `pytest --nbval-lax` compares them with the committed outputs.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CHECK = "# NBVAL_CHECK_OUTPUT\n"


def repository_url() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["urls"]["Repository"].rstrip("/")


def md(text: str):
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(source: str, check: bool = False, tags: tuple[str, ...] = ()):
    cell = nbformat.v4.new_code_cell((CHECK if check else "") + source.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def header(filename: str, title: str, goal: str):
    """Title, one-line goal and the two badges, all pointing at one configurable repository."""
    url = repository_url()
    path = re.sub(r"^https://github\.com/", "", url)
    colab = f"https://colab.research.google.com/github/{path}/blob/main/notebooks/{filename}"
    kaggle = f"https://kaggle.com/kernels/welcome?src={url}/blob/main/notebooks/{filename}"
    return md(
        f"""
# {title}

**Goal:** {goal}

<a href="{colab}" target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>
<a href="{kaggle}" target="_parent"><img src="https://kaggle.com/static/images/open-in-kaggle.svg" alt="Open In Kaggle"/></a>
"""
    )


def parameters(extra: str = ""):
    """The papermill `parameters` cell: full settings by default, small ones when FER_SMOKE=1."""
    body = f'''
import os

# Smoke mode (FER_SMOKE=1) is what CI and `make demo` use: demo data and tiny settings.
SMOKE = os.environ.get("FER_SMOKE", "") == "1"
DATA = "demo" if SMOKE else None  # None: find FER2013 (FER_DATA_DIR, Kaggle input, ./data/fer2013, kagglehub), else demo
SEED = 42
RUNS_ON_DRIVE = False  # Colab only: keep run folders on Google Drive (mounted when True); a Colab VM forgets them
{extra.strip()}
'''
    return code(body, tags=("parameters",))


# What the setup cell installs on Colab and Kaggle besides fer_utils (itself installed with --no-deps):
# the face detector's package, which neither platform ships. `tools/test_stack.py` runs these lines.
PLATFORM_EXTRAS = '"mtcnn>=1.0" "lz4>=4.3"'


def setup_cell(extra_imports: str = "", extra_arguments: str = ""):
    """The one setup cell: install on Colab/Kaggle, then seeds, data discovery and the environment report."""
    url = repository_url()
    arguments = "data=DATA, seed=SEED, runs_on_drive=RUNS_ON_DRIVE" + (", " + extra_arguments if extra_arguments else "")
    body = f'''
import sys

# On Colab and Kaggle, install fer_utils from the repository. --no-deps keeps the platform's own
# TensorFlow, Keras, NumPy and CUDA stack; the second line adds the face detector they lack.
# notebook.setup then checks every library against fer_utils' supported range.
if "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
    %pip install --quiet --no-deps "git+{url}.git"
    %pip install --quiet {PLATFORM_EXTRAS}

from fer_utils import notebook
{extra_imports.strip()}

context = notebook.setup({arguments})
'''
    return code(body)


def write(filename: str, cells: list) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    notebook.cells = cells
    path = NOTEBOOKS / filename
    nbformat.write(notebook, path)
    return path


# ---------------------------------------------------------------------------------------------
# 01 - explore the data
# ---------------------------------------------------------------------------------------------
def explore_data():
    name = "01_explore_data.ipynb"
    return name, [
        header(name, "Exploring FER2013", "know the faces, the classes and the pitfalls of FER2013 before training anything."),
        md(
            """
## Introduction

FER2013 holds 35,887 grayscale face crops of 48x48 pixels, each labelled with one of seven expressions:
angry, disgust, fear, happy, sad, surprise and neutral. It was collected by searching the web and
released for a Kaggle challenge in 2013; Kaggle's `msambare/fer2013` copy lays it out as
`train/<class>/*.jpg` (28,709 images) and `test/<class>/*.jpg` (7,178 images: the challenge's public
and private test sets). Human accuracy on it is estimated at about 65%.

This notebook looks at the data the way a careful practitioner would before training: how many
images each class has, what the faces look like, how bright and contrasted they are, whether there
are duplicates or blank images, and which validation split the training notebooks will use.
"""
        ),
        md("## Setup\n\nThe parameters cell comes first (papermill can override it), then one setup cell."),
        parameters('VAL_FRACTION = 0.1  # share of train held out for validation (the test split is never used to tune)'),
        setup_cell("from fer_utils import data, exploration, plots"),
        md(
            """
## Data

`fer_utils.data.load_dataset` decodes every image in parallel into a uint8 array of shape
`(N, 48, 48, 1)` and caches the result under a fingerprint of the file list, so the next load takes
a fraction of a second and a changed folder is never served stale. Labels follow FER2013's official
order, whatever the folder order on disk.
"""
        ),
        code(
            """
dataset = data.load_dataset(context.data_path)
for split_name, split in dataset.items():
    print(f"{split_name:>6}: images {split.images.shape} {split.images.dtype}, labels {split.labels.shape}")
print("classes:", ", ".join(next(iter(dataset.values())).class_names))
""",
            check=True,
        ),
        md("### Images per class\n\nThe table is the one `python -m fer_utils info DATA` prints."),
        code("summary = data.dataset_summary(dataset)\nsummary", check=True),
        code("plots.plot_class_counts(summary)"),
        code(
            """
counts = summary.drop(index="total").iloc[:, 0]
print(f"Largest class: {counts.idxmax()} ({counts.max()} images); smallest: {counts.idxmin()} ({counts.min()} images); "
      f"ratio {counts.max() / counts.min():.1f} to 1.")
""",
            check=True,
        ),
        md(
            """
The classes are far from balanced: *happy* dominates and *disgust* is rare. A model that ignores
the imbalance learns to under-predict rare classes, so the training notebooks weight the loss by
inverse class frequency (`fer_utils.data.class_weights`), and the evaluation reports balanced
accuracy and macro-F1 next to plain accuracy.

### What the faces look like
"""
        ),
        code('plots.plot_sample_grid(dataset["train"], per_class=6, seed=SEED)'),
        md(
            """
### Pixel intensities

Brightness and contrast vary a lot between images. The statistics per class show whether any class
is systematically darker or flatter, which a model could exploit as a shortcut.
"""
        ),
        code("statistics = exploration.pixel_statistics(dataset)\nstatistics.round(1)"),
        code('plots.plot_pixel_histograms(dataset["train"])'),
        md(
            """
### Duplicates and blank images

FER2013 is known to contain byte-identical images, some of them in both the training and the test
split, and a handful of nearly blank frames. Identical images across splits inflate test scores, and
identical images with different labels cap the reachable accuracy.
"""
        ),
        code(
            """
duplicates = exploration.find_duplicates(dataset)
duplicate_counts = exploration.duplicate_summary(duplicates)
blank = {split_name: len(exploration.near_blank(split)) for split_name, split in dataset.items()}
print("duplicates:", duplicate_counts)
print("near-blank images per split:", blank)
""",
            check=True,
        ),
        md(
            """
## The validation split

The training notebooks carve a stratified validation split out of `train` (seeded, deterministic):
early stopping and checkpoint selection look at it, never at `test`. The test split is touched once,
at the end, in the comparison notebook.
"""
        ),
        code(
            """
train, validation = data.train_val_split(dataset["train"], val_fraction=VAL_FRACTION, seed=SEED)
split_table = data.dataset_summary({"train": train, "validation": validation, **{k: v for k, v in dataset.items() if k != "train"}})
split_table
""",
            check=True,
        ),
        md("## Conclusion"),
        code(
            """
from IPython.display import Markdown

test_size = len(dataset["test"]) if "test" in dataset else 0
Markdown(
    f"This dataset ({context.data.source}) has **{len(dataset['train']):,}** training and **{test_size:,}** test images. "
    f"The largest class, *{counts.idxmax()}*, has {counts.max() / counts.min():.1f} times as many images as the smallest, "
    f"*{counts.idxmin()}*, so class weights and macro-averaged metrics matter. "
    f"There are {duplicate_counts['groups']} groups of identical images "
    f"({duplicate_counts['groups_across_splits']} shared between splits) and {sum(blank.values())} near-blank images. "
    f"Training will use {len(train):,} images and validate on {len(validation):,}."
)
"""
        ),
        md(
            """
Next: [02_preview_augmentation](02_preview_augmentation.ipynb) shows what the model sees during
training.
"""
        ),
    ]


# ---------------------------------------------------------------------------------------------
# 02 - preview the augmentation
# ---------------------------------------------------------------------------------------------
def preview_augmentation():
    name = "02_preview_augmentation.ipynb"
    return name, [
        header(name, "Previewing augmentation and model inputs", "see exactly what the model receives during training: augmented faces, and pixels after resizing and backbone preprocessing."),
        md(
            """
## Introduction

With only a few thousand faces per class, a network quickly memorises the training images.
Augmentation draws a slightly different version of every face at every epoch: a mirror image, a
small rotation, zoom or shift, a contrast change. In `fer_utils` these transforms are Keras layers
*inside* the model, so they run on the accelerator, act only during training (`fit`), and pass
faces through unchanged at evaluation and prediction time.

After augmentation the model resizes the 48x48 face to the backbone's input size, repeats the gray
channel three times, and applies the backbone's own `preprocess_input`. This notebook shows each
step on the same faces.
"""
        ),
        md("## Setup"),
        parameters(
            """
DRAWS = 5  # augmented versions shown per face
BACKBONES_SHOWN = ["vgg16", "resnet50", "efficientnetb0"]
IMG_SIZE = 96  # the input size to preview (the GPU default for VGG16 and ResNet50)
"""
        ),
        setup_cell("from fer_utils import augmentation, data, models, plots"),
        md("## Data\n\nOne training face per class."),
        code(
            """
train = data.load_dataset(context.data_path)["train"]
first_of_each_class = [int((train.labels == label).argmax()) for label in range(len(train.class_names))]
faces = train.images[first_of_each_class]
print("faces:", faces.shape, "classes:", ", ".join(train.class_names))
""",
            check=True,
        ),
        md(
            """
## The augmentation pipeline

These are the strengths used in training (`fer_utils.augmentation.AugmentationConfig`); rotation, zoom
and shift are fractions (0.05 of a full turn is 18 degrees; 0.1 of the image is about 5 pixels).
"""
        ),
        code(
            """
import pandas as pd

config = augmentation.AugmentationConfig()
pd.Series(config.to_dict(), name="strength").to_frame()
""",
            check=True,
        ),
        code(
            """
draws = augmentation.augment_samples(faces, config, draws=DRAWS, seed=SEED)
rows = {"original": faces}
rows.update({f"draw {index + 1}": draw for index, draw in enumerate(draws)})
plots.plot_image_rows({label: images for label, images in rows.items()}, title="Each column is one face: original, then augmented draws")
"""
        ),
        md(
            """
### Each transform on its own

The same first face under each transform alone, at its training strength, shows how strong each
one is. Mirror images are safe for expressions (faces are close to symmetric); rotations and shifts
are kept small because FER2013's faces are already roughly aligned.
"""
        ),
        code(
            """
single = {
    transform: augmentation.augment_samples(faces[:1], transform_config, draws=6, seed=SEED)[:, 0]
    for transform, transform_config in augmentation.single_transforms(config).items()
}
plots.plot_image_rows(single, title="One transform at a time (six draws each)")
"""
        ),
        md(
            """
## What the backbone receives

VGG16 and ResNet50 were trained on ImageNet with Caffe-style preprocessing: RGB converted to BGR and
the ImageNet channel means subtracted (no scaling). EfficientNet rescales inside itself, so its
`preprocess_input` is a pass-through. The model does this internally; below is the output of its
`preprocess` layer for each backbone (built with `weights=None`: preprocessing does not depend on
the weights).
"""
        ),
        code(
            """
inputs_by_backbone = {}
for backbone in BACKBONES_SHOWN:
    model = models.build_model(backbone, img_size=IMG_SIZE, weights=None)
    inputs_by_backbone[backbone] = models.model_inputs(model, faces)
ranges = pd.DataFrame(
    {backbone: {"shape": str(values.shape[1:]), "min": round(float(values.min()), 2), "max": round(float(values.max()), 2), "channel means": str(values.mean(axis=(0, 1, 2)).round(1))}
     for backbone, values in inputs_by_backbone.items()}
).T
ranges
""",
            check=True,
        ),
        code(
            """
plots.plot_image_rows(
    {backbone: values[..., 0] for backbone, values in inputs_by_backbone.items()},
    title=f"First channel of the backbone input at {IMG_SIZE} px (each image on its own grey scale)",
    value_range=None,
)
"""
        ),
        md("## Conclusion"),
        code(
            """
from IPython.display import Markdown

vgg_range = inputs_by_backbone["vgg16"] if "vgg16" in inputs_by_backbone else next(iter(inputs_by_backbone.values()))
Markdown(
    f"Training sees {DRAWS} different versions of each face in as many epochs, from "
    f"{len(augmentation.single_transforms(config))} transforms. Backbone inputs are "
    f"{IMG_SIZE}x{IMG_SIZE}x3; for VGG16 they span {vgg_range.min():.0f} to {vgg_range.max():.0f} "
    "(mean-subtracted, not scaled), exactly what `keras.applications.vgg16.preprocess_input` produces "
    "(a unit test checks this for every backbone). Next: [03_train_vgg16](03_train_vgg16.ipynb)."
)
"""
        ),
    ]


# ---------------------------------------------------------------------------------------------
# 03 / 04 - training notebooks share one frame
# ---------------------------------------------------------------------------------------------
TRAIN_INTRO = {
    "vgg16": """
## Introduction

The seed experiment: VGG16 with ImageNet weights, **frozen**, followed by a small head
(GlobalAveragePooling -> Dense(128, relu) -> Dropout -> Dense(7, softmax)), trained with augmentation.
Then the first piece of future work: **fine-tuning** VGG16's last convolutional block (`block5`) at a
low learning rate.

Why two phases? A freshly initialised head produces large, random gradients; letting them reach the
pretrained convolutions would wreck features learned on 1.2 million images. So the head is trained
first, on frozen features, and only then are the top layers unfrozen.

**A fast path for phase 1.** While the backbone is frozen its output for a given face never changes,
so `fer_utils` computes the features of the training and validation faces **once** and trains the head
on them, instead of pushing every image through VGG16 at every epoch (`HEAD_MODE = "images"` keeps the
seed's way: augmented images through the frozen backbone each epoch). The trained head is then put
back on the backbone, and phase 2 trains on images with augmentation.
""",
    "resnet50": """
## Introduction

The same experiment as [03_train_vgg16](03_train_vgg16.ipynb), with ResNet50: frozen backbone + head,
then fine-tuning of the last stage (`conv5`). What differs:

- **BatchNormalization.** ResNet50 has 53 BatchNorm layers; VGG16 has none. Their moving mean and
  variance were estimated on ImageNet. If they ran in training mode on small FER batches they would
  re-estimate those statistics from 48x48 gray faces and destroy the pretrained features. The model
  calls the backbone with `training=False`, and fine-tuning keeps every BatchNorm layer frozen.
- **Preprocessing.** Keras' ResNet50 uses the same Caffe-style preprocessing as VGG16 (BGR, ImageNet
  means subtracted, no scaling), not the [-1, 1] scaling of ResNet50V2: the model reproduces it exactly.
- **Size and depth.** 23.6 million backbone parameters against VGG16's 14.7 million, and a 2048-wide
  feature vector instead of 512; at 48 px the last stage works on a 2x2 grid.
""",
}


def train_backbone(number: str, backbone: str, title: str):
    name = f"{number}_train_{backbone}.ipynb"
    display = {"vgg16": "VGG16", "resnet50": "ResNet50"}[backbone]
    return name, [
        header(name, title, f"train {display} on FER2013 by transfer learning (frozen backbone + head, then fine-tuning) and save the run for comparison."),
        md(TRAIN_INTRO[backbone]),
        md("## Setup"),
        parameters(
            f"""
BACKBONE = "{backbone}"
WEIGHTS = "imagenet"  # "imagenet", None (random initialisation) or a weights file
WEIGHTS_DIR = None  # a folder holding Keras's "notop" weights files (e.g. an attached Kaggle dataset); None: /kaggle/input, the Keras cache, then download
IMG_SIZE = None  # None: 48 px on CPU, 96 px on GPU (see fer_utils.models.SPECS)
EPOCHS_HEAD = 15
EPOCHS_FINETUNE = 15
BATCH_SIZE = 64
HEAD_MODE = "cached"  # "cached": features computed once; "images": the seed's way, images through the frozen backbone
HEAD_BATCHNORM = False  # the seed's head; True standardises the pooled features first
DROPOUT = 0.5
LABEL_SMOOTHING = 0.1
PATIENCE = 5  # epochs without validation improvement before a phase stops
VAL_FRACTION = 0.1
OVERWRITE = False  # True retrains even when the run folder already holds a finished run

if SMOKE:
    # CI has no internet, so no ImageNet weights: the backbone is random. Random features are tiny
    # and badly scaled, so the head standardises them and trains longer on the (cheap) cached
    # features; one fine-tuning epoch still exercises phase 2.
    WEIGHTS, HEAD_BATCHNORM, DROPOUT, LABEL_SMOOTHING, PATIENCE = None, True, 0.0, 0.0, 0
    EPOCHS_HEAD, EPOCHS_FINETUNE, BATCH_SIZE, VAL_FRACTION, OVERWRITE = 60, 1, 32, 0.2, True
"""
        ),
        setup_cell("from fer_utils import data, evaluation, models, plots, runs, training", "weights_dir=WEIGHTS_DIR"),
        md(
            """
ImageNet weights come from a local copy of Keras's "notop" file when there is one (`WEIGHTS_DIR`,
any folder under `/kaggle/input`, the Keras cache), else Keras downloads them. Offline and without
a copy, the next cell says so and falls back, visibly, to random weights, so the notebook still
runs end to end.
"""
        ),
        code("WEIGHTS = notebook.resolve_weights(BACKBONE, WEIGHTS)\nprint(f\"weights: {WEIGHTS or 'random initialisation'}\")"),
        md(
            """
## Data

The validation split is carved from `train`, stratified and seeded; it decides early stopping and
which epoch's weights are kept. The test split is not loaded here at all.
"""
        ),
        code(
            """
dataset = data.load_dataset(context.data_path)
train, validation = data.train_val_split(dataset["train"], val_fraction=VAL_FRACTION, seed=SEED)
data.dataset_summary({"train": train, "validation": validation})
""",
            check=True,
        ),
        md(
            """
## Configuration

`training.default_config` holds the recommended settings per backbone; the parameters above
override some of them. Every value is written to the run's `config.json`.
"""
        ),
        code(
            """
config = training.default_config(
    BACKBONE, weights=WEIGHTS, img_size=IMG_SIZE, epochs_head=EPOCHS_HEAD, epochs_finetune=EPOCHS_FINETUNE,
    batch_size=BATCH_SIZE, head_mode=HEAD_MODE, head_batchnorm=HEAD_BATCHNORM, dropout=DROPOUT,
    label_smoothing=LABEL_SMOOTHING, patience=PATIENCE, val_fraction=VAL_FRACTION, seed=SEED,
)
for phase, epochs in training.planned_phases(config):
    print(f"phase {phase}: up to {epochs} epochs")
print(f"class weights: {config.class_weights}, label smoothing: {config.label_smoothing}, monitor: {config.monitor}, patience: {config.patience}")
print(f"fine-tuned layers start with: {config.finetune_prefixes or models.get_spec(BACKBONE).finetune_prefixes}")
""",
            check=True,
        ),
        md(
            """
## Train

`training.train_model` runs both phases with Keras progress bars and writes the run folder
atomically. It is **resumable**: if the session dies, running this cell again continues from the last
finished epoch (and a finished run is simply loaded, unless `OVERWRITE` is true).
"""
        ),
        code(
            """
run_dir = training.train_model(train, validation, config, context.runs_dir / BACKBONE, progress=2, overwrite=OVERWRITE,
                               extra_config={"dataset": {"path": str(context.data_path), "source": context.data.source}})
run = runs.load_run(run_dir)
print("Run folder:", run_dir)
"""
        ),
        md("## The model\n\nThe saved model takes raw 48x48 pixels; everything else happens inside it."),
        code(
            """
model = run.model
counts = models.trainable_summary(model)
backbone_parameters = model.get_layer("backbone").count_params()
print(f"layers: {[layer.name for layer in model.layers]}")
print(f"parameters: {model.count_params():,} in total, {backbone_parameters:,} in the backbone, "
      f"{model.count_params() - backbone_parameters:,} in the head")
""",
            check=True,
        ),
        md("## Training curves\n\nThe dashed line marks the switch from the head phase to fine-tuning."),
        code('plots.plot_training_curves(run.history, title=f"{BACKBONE}: training and validation")'),
        code(
            """
phase_summary = run.history.groupby("phase", sort=False).agg(
    epochs=("epoch", "count"), best_val_accuracy=("val_accuracy", "max"), seconds=("seconds", "sum")
)
phase_summary.round(3)
"""
        ),
        md(
            """
## Evaluate on the validation split

These numbers steer model selection, so they are slightly optimistic; the unbiased test-set numbers
come once, in [05_compare_models](05_compare_models.ipynb).
"""
        ),
        code(
            """
result = evaluation.evaluate_model(run, validation, n_boot=0)
print(evaluation.format_report(result))
"""
        ),
        code('plots.plot_confusion_matrices({BACKBONE: result.confusion}, validation.class_names)'),
        md(
            """
### Did it learn?

Chance is not 1/7 here: a model that ignores the face but predicts each class as often as this one
does would score `chance_accuracy` (always answering the largest class scores exactly that). A
one-sided binomial test says whether the observed accuracy beats it. In smoke mode this is the
regression check of the whole pipeline: it fails the notebook (and CI) when the model learned nothing.
"""
        ),
        code(
            """
check = evaluation.chance_test(validation.labels, result.y_pred, len(validation.class_names))
print(f"validation accuracy {check['accuracy']:.3f} against a chance level of {check['chance_accuracy']:.3f} "
      f"(one-sided binomial p = {check['p_value']:.2g}, {check['n']} images)")
if SMOKE:
    assert check["p_value"] < 0.05, "the model did not learn on the demo data"
"""
        ),
        md("## Where the run went"),
        code('sorted(path.name for path in run_dir.iterdir() if not path.name.startswith("."))', check=True),
        md("## Conclusion"),
        code(
            """
from IPython.display import Markdown

seconds = run.config.get("wall_time_s", {})
Markdown(
    f"{BACKBONE} ({run.config['weights']['description']}, {run.config['img_size']} px input) "
    f"reached **{result.metrics['accuracy']:.1%}** validation accuracy and {result.metrics['macro_f1']:.3f} macro-F1 "
    f"after {len(run.history)} epochs ({', '.join(f'{phase}: {value:.0f} s' for phase, value in seconds.items())}); "
    f"the saved weights come from the {run.config['selected_phase']} phase. "
    + ("**Smoke run with random weights: the numbers only show that the pipeline works.** " if SMOKE else "")
    +
    f"The run is saved in `{run_dir.name}/` for [05_compare_models](05_compare_models.ipynb)."
)
"""
        ),
    ]


def train_vgg16():
    return train_backbone("03", "vgg16", "Training VGG16 on FER2013")


def train_resnet50():
    return train_backbone("04", "resnet50", "Training ResNet50 on FER2013")


# ---------------------------------------------------------------------------------------------
# 05 - compare the saved runs
# ---------------------------------------------------------------------------------------------
def compare_models():
    name = "05_compare_models.ipynb"
    return name, [
        header(name, "Comparing the models", "judge the saved runs on the test split, once, with confidence intervals and significance tests, and see where each model fails."),
        md(
            """
## Introduction

This notebook **never trains**. It loads the run folders written by notebooks 03 and 04 (and any
other run in the runs folder, such as an EfficientNetB0 or small-CNN run from the command line) and
scores them on the test split, which no model has seen and which played no part in choosing epochs
or settings.

A single accuracy number hides a lot, so each model gets: accuracy and macro-F1 with bootstrap 95%
confidence intervals, balanced accuracy, top-2 accuracy, log loss and calibration error, per-class
precision/recall/F1, confusion matrices, and its inference speed. McNemar's exact test says whether
two models' accuracies differ by more than chance on these same images. Finally, an **ensemble**
(the average of the models' probabilities) and **test-time augmentation** (averaging each face with
its mirror image) are evaluated in the same way.
"""
        ),
        md("## Setup"),
        parameters(
            """
RUNS = None  # a list of run folders; None takes every run in the runs folder
SPLIT = "test"
N_BOOT = 200 if SMOKE else 1000  # bootstrap resamples for the confidence intervals
GRADCAM_FACES = 7
"""
        ),
        setup_cell("from pathlib import Path\n\nfrom fer_utils import data, evaluation, plots, runs"),
        md("## Data and runs"),
        code(
            """
run_dirs = [Path(path) for path in RUNS] if RUNS else runs.find_runs(context.runs_dir)
test = data.load_labelled(context.data_path, split=SPLIT)
print(f"{SPLIT} split: {len(test)} images")
print("runs:", ", ".join(path.name for path in run_dirs))
""",
            check=True,
        ),
        md(
            """
## Scores on the test split

`evaluation.compare_runs` evaluates each run and their ensemble on the same images, and writes
`summary.md`, `summary.json` and every figure below into the comparison folder.
"""
        ),
        code(
            """
comparison_dir = context.runs_dir / "comparison"
table, results = evaluation.compare_runs(run_dirs, test, comparison_dir, n_boot=N_BOOT, seed=SEED, gradcam_images=0)
evaluation.formatted_summary(list(results.values()))
"""
        ),
        md(
            """
### Are the differences real?

McNemar's exact test looks only at the faces on which two models disagree about correctness: `b`
faces that only the first model gets right, `c` that only the second gets right. Under the null
hypothesis of equal accuracy, b and c are a fair coin's split.
"""
        ),
        code("mcnemar = evaluation.mcnemar_table(list(results.values()))\nmcnemar.round(4)"),
        md("## Where the models fail\n\nRows are the true class and sum to one; the diagonal is each class's recall."),
        code("plots.plot_confusion_matrices({name: result.confusion for name, result in results.items()}, test.class_names)"),
        code("plots.plot_per_class_f1({name: result.per_class for name, result in results.items()})"),
        md("### Training and validation curves of every run"),
        code("plots.plot_validation_curves({path.name: runs.load_history(path) for path in run_dirs})"),
        md(
            """
### Misclassified faces

The most confident mistakes of the run with the best *validation* accuracy: often a sign of label
noise or of genuinely ambiguous faces.
"""
        ),
        code(
            """
chosen = runs.best_run(context.runs_dir).name
mistakes = results[chosen]
plots.plot_misclassified(test.images, mistakes.y_true, mistakes.proba, test.class_names, n=16, title=f"{chosen}: confident mistakes")
"""
        ),
        md(
            """
### Calibration

A calibrated model that says 80% is right 80% of the time. The diagonal is perfect calibration; the
expected calibration error (ECE) in the table above is the average gap.
"""
        ),
        code("plots.plot_reliability_diagram({name: (result.y_true, result.proba) for name, result in results.items()})"),
        md(
            """
### Grad-CAM: where each model looks

Grad-CAM weights the last convolutional feature maps by the gradient of the predicted class score,
showing which parts of the face drove the decision.
"""
        ),
        code(
            """
sample = [int((test.labels == label).argmax()) for label in range(len(test.class_names))][:GRADCAM_FACES]
for path in run_dirs:
    run = runs.load_run(path)
    heatmaps = evaluation.gradcam_heatmaps(run.model, test.images[sample])
    predicted = run.model.predict(test.images[sample], verbose=0).argmax(axis=1)
    titles = [f"true {test.class_names[t]}\\npred {run.class_names[p]}" for t, p in zip(test.labels[sample], predicted)]
    display(plots.plot_gradcam(test.images[sample], heatmaps, titles, title=f"Grad-CAM: {run.name}"))
"""
        ),
        md(
            """
## Test-time augmentation

Each face and its mirror image are scored and the probabilities averaged. The mirror is one of the
training augmentations, so the models have learned to handle it.
"""
        ),
        code(
            """
tta_results = [evaluation.evaluate_model(path, test, tta=True, n_boot=N_BOOT, seed=SEED, name=f"{path.name} + TTA") for path in run_dirs]
if len(run_dirs) > 1:
    tta_results.append(evaluation.ensemble_result(tta_results, name="ensemble + TTA", n_boot=N_BOOT, seed=SEED))
evaluation.formatted_summary(tta_results)
"""
        ),
        md("## Conclusion"),
        code(
            """
from IPython.display import Markdown

Markdown(evaluation.comparison_conclusion(list(results.values()), mcnemar, tta_results))
"""
        ),
        md(f"The same summary is saved as `comparison/summary.md` in the runs folder. Next: [06_predict_faces](06_predict_faces.ipynb)."),
    ]


# ---------------------------------------------------------------------------------------------
# 06 - predict faces on photos and video
# ---------------------------------------------------------------------------------------------
def predict_faces():
    name = "06_predict_faces.ipynb"
    return name, [
        header(name, "Recognising expressions in photos and video", "use a saved model on real photos and on a video stream: find the faces, classify each one, draw the result."),
        md(
            """
## Introduction

The models of notebooks 03 and 04 were trained on 48x48 face crops. To use one on an ordinary photo
we first have to find the faces: the MTCNN detector of the `mtcnn` package, whose weights ship inside
the package (nothing is downloaded), returns a box per face; where `mtcnn` is missing, OpenCV 4's Haar
cascade takes over, and `faces.resolve_detector()` says which one runs. Each box is cut out,
converted to grayscale and resized to 48x48, and passed to the model **as raw pixels**: the saved
model contains its own resizing and backbone preprocessing, so nothing here can drift from training.

The same loop runs over a video file or a webcam and reports the frames per second it sustains,
end to end (read, detect, classify, draw).
"""
        ),
        md("## Setup"),
        parameters(
            """
RUN = None  # a run folder or .keras file; None picks the run with the best *validation* accuracy
PHOTO = None  # a photo path; None uses matplotlib's public-domain sample photo of Grace Hopper
VIDEO = None  # a video file, or a webcam index such as 0 (local Jupyter); None writes a short test video
MAX_FRAMES = 30 if SMOKE else 300
SHOW_LIVE = False  # True shows the annotated frames live while the loop runs (local Jupyter)
"""
        ),
        setup_cell("from fer_utils import faces, plots, runs"),
        md(
            """
## Load a trained model

The run is chosen by its validation accuracy (the split carved from train), never by test results.
"""
        ),
        code(
            """
run = runs.load_run(RUN or runs.best_run(context.runs_dir))
print(f"Run: {run.path.name} (backbone {run.config.get('backbone')}), validation accuracy {run.val_metrics.get('accuracy', float('nan')):.3f}")
"""
        ),
        code('print("Classes, in output order:", ", ".join(run.class_names))', check=True),
        md(
            """
## Faces in a photo

The detector returns square boxes; `min_size` skips boxes smaller than the model's 48 pixels.
"""
        ),
        code(
            """
image = faces.load_image(PHOTO or faces.sample_photo_path())
boxes = faces.detect_faces(image)
print(f"Photo of {image.shape[1]}x{image.shape[0]} pixels: {len(boxes)} face(s) found by {faces.resolve_detector()}")
for x, y, width, height in boxes:
    print(f"  box at x={x}, y={y}, {width}x{height} pixels")
""",
            check=True,
        ),
        code(
            """
predictions = faces.predict_faces(run.model, image, run.class_names, boxes=boxes)
crops = faces.crop_faces(image, boxes)
plots.plot_face_predictions(faces.annotate(image, predictions), crops, predictions, run.class_names)
"""
        ),
        code(
            """
from IPython.display import Markdown

described = "; ".join(f"face {i + 1}: **{p.label}** ({p.confidence:.0%})" for i, p in enumerate(predictions)) or "no face"
caveat = (" The model was trained on the *demo* drawings, so its guess on a real face is close to arbitrary."
          if run.config.get("dataset", {}).get("source") == "demo" or context.is_demo else "")
Markdown(f"The model sees {len(predictions)} face(s): {described}.{caveat}")
"""
        ),
        md(
            """
## A video stream

`faces.run_video` reads frames from a file or a webcam, detects and classifies the faces in each,
draws them, and can write the annotated video. With `VIDEO = None` it runs on a short generated
clip of a face moving across the frame, so the notebook works anywhere; set `VIDEO = 0` in local
Jupyter to use your webcam (interrupt the kernel to stop).
"""
        ),
        code(
            """
import tempfile
from pathlib import Path

source = VIDEO if VIDEO is not None else faces.write_test_video(Path(tempfile.mkdtemp()) / "moving_face.mp4", frames=MAX_FRAMES)
snapshots = []
keep_every = max(1, MAX_FRAMES // 4)


def keep_snapshot(index, frame, frame_predictions):
    if index % keep_every == 0:
        snapshots.append(frame)


stats = faces.run_video(run, source, max_frames=MAX_FRAMES, on_frame=keep_snapshot, show=SHOW_LIVE,
                        out_path=context.runs_dir / "annotated_video.mp4")
print(f"Frames processed: {stats['frames']}")
""",
            check=True,
        ),
        code(
            """
print(f"Frames with a face: {stats['frames_with_faces']} of {stats['frames']}; "
      f"{stats['fps']:.1f} frames per second end to end; annotated video: {stats['out_path']}")
plots.plot_image_rows({"annotated frames": snapshots}, title="Frames from the video loop")
"""
        ),
        md("## Conclusion"),
        code(
            """
Markdown(
    f"On this machine ({context.device['device']}) the whole loop ran at **{stats['fps']:.0f} frames per second** "
    f"with {run.config.get('backbone', 'the model')} at {run.config.get('img_size', 48)} px input, "
    f"and found a face in {stats['frames_with_faces']} of {stats['frames']} frames with the {stats['detector']} detector. "
    "MTCNN also finds faces tilted by 30 degrees, which the Haar cascade misses, at about three times "
    "its time per frame (`benchmarks/bench_detectors.py`); neither is made for profile faces."
)
"""
        ),
    ]


BUILDERS = [explore_data, preview_augmentation, train_vgg16, train_resnet50, compare_models, predict_faces]


def main() -> int:
    NOTEBOOKS.mkdir(exist_ok=True)
    for builder in BUILDERS:
        name, cells = builder()
        print("wrote", write(name, cells).relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
