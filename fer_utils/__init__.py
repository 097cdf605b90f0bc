"""Helpers for facial expression recognition on FER2013 with Keras transfer learning.

The package is split by concern:

- `fer_utils.data`: load FER2013 (folders or csv), cache, split, discover, demo data.
- `fer_utils.augmentation`: the training-time augmentation pipeline.
- `fer_utils.models`: backbone registry and the model builder (raw pixels in, softmax out).
- `fer_utils.training`: training phases, callbacks and run folders.
- `fer_utils.runs`: reading and writing run folders.
- `fer_utils.evaluation`: metrics, confidence intervals, McNemar, ensembles, TTA, comparison.
- `fer_utils.plots`: matplotlib figures.
- `fer_utils.faces`: face detection and prediction on photos and video.
- `fer_utils.export`: ONNX, LiteRT and SavedModel exports, and their runtimes.
- `fer_utils.cli`: the `python -m fer_utils` command line.

Importing the package is cheap: nothing heavy (TensorFlow, Keras) is imported here.
"""

__version__ = "0.1.0"

# FER2013's official label order (the `emotion` column of fer2013.csv). Every array, model output
# and table in the project uses this order; folder names are mapped onto it by name.
CLASS_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

__all__ = ["CLASS_NAMES", "__version__"]
