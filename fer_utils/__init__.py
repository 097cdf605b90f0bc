"""Helpers for facial expression recognition on FER2013 with Keras transfer learning.

The package is split by concern:

- `fer_utils.data`: load FER2013 (folders or csv), cache, split, discover, demo data.
- `fer_utils.augmentation`: the training-time augmentation pipeline.
- `fer_utils.models`: backbone registry and the model builder (raw pixels in, softmax out).
- `fer_utils.training`: training phases, callbacks and run folders.
- `fer_utils.runs`: reading and writing run folders.
- `fer_utils.metrics`: metrics of class probabilities against labels (pure numpy/pandas).
- `fer_utils.stats`: bootstrap confidence intervals, McNemar's test, Holm, the chance test.
- `fer_utils.evaluation`: a model, run or ensemble scored on a labelled split (TTA, results).
- `fer_utils.gradcam`: Grad-CAM heatmaps.
- `fer_utils.report`: comparing runs: tables, summary.md / summary.json, figures.
- `fer_utils.plots`: matplotlib figures (they compute nothing).
- `fer_utils.faces`: face detection and prediction on photos and video.
- `fer_utils.cli`: the `python -m fer_utils` command line.

Importing the package is cheap: nothing heavy (TensorFlow, Keras) is imported here.
"""

__version__ = "0.1.0"

# FER2013's official label order (the `emotion` column of fer2013.csv). Every array, model output
# and table in the project uses this order; folder names are mapped onto it by name.
CLASS_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

__all__ = ["CLASS_NAMES", "__version__"]
