"""Helpers for facial expression recognition on FER2013 with Keras transfer learning.

The package is split by concern:

- `fer_utils.data`: load FER2013 (folders or csv), cache, split, discover.
- `fer_utils.demo`: the drawn demo dataset (`make_demo_dataset`, `demo_dataset_path`).
- `fer_utils.augmentation`: the training-time augmentation pipeline.
- `fer_utils.models`: backbone registry and the model builder (raw pixels in, softmax out).
- `fer_utils.training_config`: `TrainConfig` (every training option, its CLI flag and help), defaults, checks.
- `fer_utils.training`: `train`, the one training function (split policy, phases, the run folder).
- `fer_utils.phases`, `fer_utils.callbacks`, `fer_utils.checkpoints`: layer freezing per phase, the
  schedule/early-stopping/checkpoint callback, and the resume state under RUN_DIR/backup.
- `fer_utils.loading`: `load_model`, the one way to load a model (run folder, .keras, "builtin").
- `fer_utils.pretrained`: the compact FER2013 model that ships with the package (`load_pretrained`).
- `fer_utils.runs`: reading and writing run folders.
- `fer_utils.metrics`: metrics of class probabilities against labels (pure numpy/pandas).
- `fer_utils.stats`: bootstrap confidence intervals, McNemar's test, Holm, the chance test.
- `fer_utils.evaluation`: a model, run or ensemble scored on a labelled split (TTA, results).
- `fer_utils.gradcam`: Grad-CAM heatmaps.
- `fer_utils.report`: comparing runs: tables, summary.md / summary.json, figures.
- `fer_utils.plots`: matplotlib figures (they compute nothing).
- `fer_utils.faces`: face detection, prediction and drawing on photos.
- `fer_utils.video`: the same on a webcam stream or a video file (`run_video`, `VideoOptions`).
- `fer_utils.files`: atomic file writes, JSON numbers and the cache folder.
- `fer_utils.export`: ONNX, LiteRT and SavedModel exports, and their runtimes.
- `fer_utils.cli`: the `python -m fer_utils` command line.

Importing the package is cheap: nothing heavy (TensorFlow, Keras) is imported here.
"""

__version__ = "0.1.0"

# FER2013's official label order (the `emotion` column of fer2013.csv). Every array, model output
# and table in the project uses this order; folder names are mapped onto it by name.
CLASS_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")



def load_pretrained():
    """The FER2013 model that ships with the package, as a `keras.Model` (see `fer_utils.pretrained`).

    Raw 48x48x1 grayscale faces (pixels 0..255) in, probabilities of `CLASS_NAMES` out.
    """
    from fer_utils.pretrained import load_pretrained as load

    return load()


__all__ = ["CLASS_NAMES", "__version__", "load_pretrained"]
