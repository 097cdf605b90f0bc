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
{extra.strip()}
'''
    return code(body, tags=("parameters",))


def setup_cell(extra_imports: str = ""):
    """The one setup cell: install on Colab/Kaggle, then seeds, data discovery and the environment report."""
    url = repository_url()
    body = f'''
import sys

# On Colab and Kaggle, install fer_utils from the repository. --no-deps keeps the platform's own
# TensorFlow, Keras and CUDA stack; everything else fer_utils needs is preinstalled there.
if "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
    %pip install --quiet --no-deps "git+{url}.git"

from fer_utils import notebook
{extra_imports.strip()}

context = notebook.setup(data=DATA, seed=SEED)
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
we first have to find the faces: OpenCV's Haar cascade detector, whose model file ships inside the
`opencv-python-headless` package (nothing is downloaded), returns a box per face. Each box is cut out,
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

The detector works on the grayscale photo; `min_size` skips boxes smaller than the model's 48 pixels.
"""
        ),
        code(
            """
image = faces.load_image(PHOTO or faces.sample_photo_path())
boxes = faces.detect_faces(image)
print(f"Photo of {image.shape[1]}x{image.shape[0]} pixels: {len(boxes)} face(s) found")
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
    f"and found a face in {stats['frames_with_faces']} of {stats['frames']} frames. "
    "The Haar cascade wants frontal, upright faces; tilted or profile faces are missed, which a "
    "learned detector (for example MediaPipe or RetinaFace) would fix at some cost in speed."
)
"""
        ),
    ]


BUILDERS = [explore_data, predict_faces]


def main() -> int:
    NOTEBOOKS.mkdir(exist_ok=True)
    for builder in BUILDERS:
        name, cells = builder()
        print("wrote", write(name, cells).relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
