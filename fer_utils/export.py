"""Export a trained model to the formats deployment runtimes read, and load those exports back.

Three formats, written on Keras's TensorFlow backend (`check_export_backend`) by Keras 3's
`Model.export`, except ONNX:

- `onnx`: one `.onnx` file for ONNX Runtime, written with tf2onnx from the frozen graph
  (`fer_utils.backend.export_onnx`; Keras's exporter leaves the fixed mean and variance of the
  VGG16/ResNet50 preprocessing as unfed graph inputs).
- `litert`: one `.tflite` file for LiteRT, formerly TensorFlow Lite (Android, iOS, microcontrollers).
- `saved_model`: a TensorFlow SavedModel folder (TF Serving, TensorFlow.js converter, `TFSMLayer`).

An export takes exactly what the Keras model takes: a batch of raw 48x48 grayscale faces,
float32 pixels 0..255, shape (batch, 48, 48, 1); the resizing and the backbone's preprocessing are
inside the model, and the output is the softmax probabilities in the run's class order. The export
runs the model in inference mode, so the random augmentation layers are left out of the graph.

The converters and runtimes that TensorFlow does not bring along are the project's `export` extra
(`pip install -e ".[export]"`); a missing one raises a ValueError that names the pip command.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fer_utils.files import FILE_MODE, TEMPORARY_SUFFIX, temporary_path

FORMATS = ("onnx", "litert", "saved_model")
# Our format name -> the name `keras.Model.export` knows it by.
_KERAS_FORMATS = {"onnx": "onnx", "litert": "litert", "saved_model": "tf_saved_model"}
# The suffix an export file must have; None for the SavedModel folder.
SUFFIXES = {"onnx": ".onnx", "litert": ".tflite", "saved_model": None}
# (import name, pip name) of what writing each format needs beyond TensorFlow (TensorFlow backend).
_CONVERTERS = {"onnx": (("tf2onnx", "tf2onnx"), ("onnx", "onnx")), "litert": (), "saved_model": ()}
# (import name, pip name) of the runtime that reads each format.
_RUNTIMES = {
    "onnx": (("onnxruntime", "onnxruntime"),),
    "litert": (("ai_edge_litert", "ai-edge-litert"),),
    "saved_model": (("tensorflow", "tensorflow"),),
}
EXTRA_INSTALL = 'pip install -e ".[export]"'


def check_format(format: str) -> str:
    """Return `format` when it is one of `FORMATS`; otherwise raise ValueError listing them."""
    if format not in FORMATS:
        raise ValueError(f"Unknown export format '{format}'; choose one of {', '.join(FORMATS)}.")
    return format


def require_packages(format: str, purpose: str = "export") -> None:
    """Raise ValueError naming the pip command when a package to `purpose` ("export" or "run") `format` is missing."""
    check_format(format)
    table = _CONVERTERS if purpose == "export" else _RUNTIMES
    missing = [pip_name for module, pip_name in table[format] if importlib.util.find_spec(module) is None]
    if missing:
        verb = "Exporting to" if purpose == "export" else "Running an export in"
        raise ValueError(
            f"{verb} {format} needs {', '.join(missing)}, which is not installed. "
            f"Install it with `pip install {' '.join(missing)}` (or the project's export extra: `{EXTRA_INSTALL}`)."
        )


def check_export_backend(format: str) -> None:
    """Raise ValueError unless Keras runs on TensorFlow, the backend every export format is written on.

    The converters are TensorFlow's (tf2onnx, the LiteRT converter, SavedModel); Keras on JAX
    needs jax2onnx for ONNX and cannot write LiteRT. A `.keras` model loads on any backend, so the
    error says how to export it from TensorFlow instead.
    """
    import keras

    running = keras.config.backend()
    if running != "tensorflow":
        raise ValueError(
            f"Exporting to {check_format(format)} runs on Keras's TensorFlow backend, and this process runs {running}. "
            "The model loads there unchanged: python -m fer_utils --backend tensorflow export MODEL ..."
        )


def check_export_path(path: str | os.PathLike, format: str, overwrite: bool = False) -> Path:
    """Return `path` as a Path when `format` can be written there; raise ValueError / FileExistsError if not.

    `onnx` and `litert` write one file with the format's suffix; `saved_model` writes a folder. An
    existing export is replaced only with `overwrite`; a folder that is not a SavedModel never is.
    """
    path = Path(path).expanduser()
    suffix = SUFFIXES[check_format(format)]
    if suffix is not None and path.suffix.lower() != suffix:
        raise ValueError(f"A {format} export is one file ending in {suffix}; got '{path}'. Name it e.g. model{suffix}.")
    if not path.exists():
        return path
    if suffix is not None and path.is_dir():
        raise ValueError(f"'{path}' is a folder; a {format} export is one file. Choose a file name ending in {suffix}.")
    if suffix is None and not path.is_dir():
        raise ValueError(f"'{path}' is a file; a saved_model export is a folder. Choose a new folder name.")
    if suffix is None and any(path.iterdir()) and not (path / "saved_model.pb").is_file():
        raise FileExistsError(
            f"'{path}' is a folder that holds files but no SavedModel; it is left alone. Choose a new folder name."
        )
    if not overwrite and (suffix is not None or any(path.iterdir())):
        raise FileExistsError(f"'{path}' exists already. Pass --overwrite (overwrite=True) to replace it.")
    return path


def inference_model(model):
    """`model` wrapped so that it always runs in inference mode (augmentation and dropout off).

    Keras's random augmentation layers default to training mode when called outside `fit` and
    `predict`, and `Model.export` traces a plain call; the wrapper pins `training=False`, so the
    exported graph holds no random ops (which the ONNX and LiteRT converters could not convert).
    """
    import keras

    if len(model.inputs) != 1:
        raise ValueError(f"Only single-input models can be exported; '{model.name}' has {len(model.inputs)} inputs.")
    pixels = keras.Input(shape=model.input_shape[1:], dtype=model.inputs[0].dtype, name="pixels")
    return keras.Model(pixels, model(pixels, training=False), name=f"{model.name}_inference")


def export_model(model, path: str | os.PathLike, format: str, overwrite: bool = False) -> Path:
    """Write `model` (a Keras model) to `path` in `format` (one of `FORMATS`) and return the path.

    The export is written beside `path` under a temporary name and moved into place when complete,
    so a failed export leaves no half-written file behind. Raises ValueError for an unknown format,
    a path that does not fit it, or a missing converter package (naming the pip command), and
    FileExistsError when `path` exists and `overwrite` is False.
    """
    import keras

    path = check_export_path(path, format, overwrite)
    check_export_backend(format)
    require_packages(format, "export")
    inference = inference_model(model)
    signature = [keras.InputSpec(shape=(None, *inference.input_shape[1:]), dtype=inference.inputs[0].dtype, name="pixels")]
    if SUFFIXES[format] is None:
        temporary = Path(tempfile.mkdtemp(dir=_made_parent(path), prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX))
    else:
        temporary = temporary_path(path, suffix=TEMPORARY_SUFFIX + SUFFIXES[format])
    try:
        with _quiet_converter_logs():
            if format == "onnx" and keras.backend.backend() == "tensorflow":
                from fer_utils import backend

                backend.export_onnx(inference, temporary, inference.input_shape[1:])
            else:
                inference.export(str(temporary), format=_KERAS_FORMATS[format], verbose=False, input_signature=signature)
        _move_into_place(temporary, path)
    except BaseException:
        _remove(temporary)
        raise
    return path


def _made_parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent


def _move_into_place(temporary: Path, path: Path) -> None:
    """Rename the finished export `temporary` to `path`, replacing an earlier export there."""
    if temporary.is_dir():
        # mkdtemp makes a private folder; give it the mode of a folder made under the umask.
        os.chmod(temporary, FILE_MODE | (FILE_MODE & 0o444) >> 2)
        if path.exists():
            shutil.rmtree(path)
    else:
        os.chmod(temporary, FILE_MODE)
    os.replace(temporary, path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def _quiet_converter_logs():
    """Lower the tf2onnx, absl and tensorflow loggers to errors while a converter runs (they log every rewrite).

    Keras's numpy-2 patch of tf2onnx probes `np.object`, which makes numpy warn; that is silenced too.
    """
    loggers = [logging.getLogger(name) for name in ("tf2onnx", "absl", "tensorflow")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*np.object.*", category=FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def load_exported(path: str | os.PathLike, format: str, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Load an export with its own runtime; return a function mapping images to probabilities.

    The function takes a batch like the Keras model's input, (batch, 48, 48, 1) or (batch, 48, 48)
    pixels 0..255, and returns float32 probabilities of shape (batch, classes). Runtimes: ONNX
    Runtime (CPU) for `onnx`, the LiteRT interpreter (`ai_edge_litert`) for `litert`, and
    `keras.layers.TFSMLayer` for `saved_model`. `threads` sets the CPU threads of ONNX Runtime and
    LiteRT (None: each runtime's default; the SavedModel runs on TensorFlow's own thread pool).
    A missing runtime raises ValueError with the pip command.
    """
    check_format(format)
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"No {format} export at '{path}'. Write one with `python -m fer_utils export`.")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}.")
    require_packages(format, "run")
    loaders = {"onnx": _onnx_runner, "litert": _litert_runner, "saved_model": _saved_model_runner}
    return loaders[format](path, threads)


def as_batch(images) -> np.ndarray:
    """`images` as the models' input: a float32 array (batch, H, W, 1); a (batch, H, W) stack gets the channel axis."""
    batch = np.asarray(images, dtype=np.float32)
    if batch.ndim == 3:
        batch = batch[..., None]
    if batch.ndim != 4:
        raise ValueError(f"Expected a batch of images (batch, 48, 48, 1); got an array of shape {batch.shape}.")
    return batch


def _onnx_runner(path: Path, threads: int | None):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def predict(images) -> np.ndarray:
        """Probabilities from ONNX Runtime for a batch of faces."""
        return np.asarray(session.run(None, {input_name: as_batch(images)})[0], dtype=np.float32)

    return predict


def _litert_runner(path: Path, threads: int | None):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    interpreter.allocate_tensors()

    def predict(images) -> np.ndarray:
        """Probabilities from the LiteRT interpreter for a batch of faces (the input is resized to the batch)."""
        batch = as_batch(images)
        if tuple(interpreter.get_input_details()[0]["shape"]) != batch.shape:
            interpreter.resize_tensor_input(input_index, batch.shape)
            interpreter.allocate_tensors()
        interpreter.set_tensor(input_index, batch)
        interpreter.invoke()
        return np.array(interpreter.get_tensor(output_index), dtype=np.float32)

    return predict


def _saved_model_runner(path: Path, threads: int | None):
    import keras

    check_export_backend("saved_model")  # TFSMLayer runs on the TensorFlow backend only
    layer = keras.layers.TFSMLayer(str(path), call_endpoint="serve")

    def predict(images) -> np.ndarray:
        """Probabilities from the SavedModel's `serve` endpoint for a batch of faces."""
        return np.asarray(keras.ops.convert_to_numpy(layer(as_batch(images))), dtype=np.float32)

    return predict


def max_difference(model, predict: Callable[[np.ndarray], np.ndarray], images) -> float:
    """The largest absolute difference between the Keras model's and an export's probabilities on `images`."""
    batch = as_batch(images)
    expected = model.predict(batch, batch_size=len(batch), verbose=0)
    return float(np.max(np.abs(predict(batch) - expected)))
