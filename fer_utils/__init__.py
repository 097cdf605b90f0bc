"""Helpers for the FER2013 notebook series: facial expression recognition with Keras transfer learning.

The modules follow what the notebooks do (data, models, training helpers, evaluation, plots,
faces/video/webcam, setup); the README's module table lists them. Importing the package is cheap:
nothing heavy (TensorFlow, Keras) is imported here.
"""

__version__ = "0.1.0"

# FER2013's official label order (the `emotion` column of fer2013.csv). Every array, model output
# and table in the project uses this order; folder names are mapped onto it by name.
CLASS_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def load_pretrained():
    """The FER2013 model that ships with the package, a `keras.Model`: raw 48x48x1 faces (0..255) in,
    probabilities of `CLASS_NAMES` out (see `fer_utils.pretrained`)."""
    from fer_utils.pretrained import load_pretrained as load

    return load()


__all__ = ["CLASS_NAMES", "__version__", "load_pretrained"]
