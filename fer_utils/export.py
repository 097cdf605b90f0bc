"""Export a trained model to ONNX, LiteRT (`.tflite`) or a SavedModel on Keras's TensorFlow backend, and
load those exports back. An export takes raw float32 48x48x1 faces (0..255) and returns the probabilities
in the run's class order, preprocessing inside.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fer_utils import files, models

FORMATS = ("onnx", "litert", "saved_model")
SUFFIXES = {"onnx": ".onnx", "litert": ".tflite", "saved_model": None}  # None: a folder
# (import name, pip name) of what writing each format needs beyond TensorFlow, and of its runtime.
_CONVERTERS = {"onnx": (("tf2onnx", "tf2onnx"), ("onnx", "onnx")), "litert": (), "saved_model": ()}
_RUNTIMES = {"onnx": (("onnxruntime", "onnxruntime"),), "litert": (("ai_edge_litert", "ai-edge-litert"),),
             "saved_model": (("tensorflow", "tensorflow"),)}
EXTRA_INSTALL = 'pip install -e ".[export]"'


def _check_format(format: str) -> str:
    if format not in FORMATS:
        raise ValueError(f"Unknown export format '{format}'; choose one of {', '.join(FORMATS)}.")
    return format


def require_packages(format: str, purpose: str = "export") -> None:
    """Raise ValueError naming the pip command when a package to `purpose` ("export" or "run") `format` is missing."""
    table = _CONVERTERS if purpose == "export" else _RUNTIMES
    missing = [pip for module, pip in table[_check_format(format)] if importlib.util.find_spec(module) is None]
    if missing:
        verb = "Exporting to" if purpose == "export" else "Running an export in"
        raise ValueError(f"{verb} {format} needs {', '.join(missing)}, which is not installed. Install it with "
                         f"`pip install {' '.join(missing)}` (or the project's export extra: `{EXTRA_INSTALL}`).")


def _check_backend(format: str) -> None:
    # The converters are TensorFlow's; on JAX, ONNX would need jax2onnx and LiteRT cannot be written.
    import keras

    if keras.config.backend() != "tensorflow":
        raise ValueError(f"Exporting to {format} runs on Keras's TensorFlow backend, and this process runs "
                         f"{keras.config.backend()}. The model loads there unchanged: python -m fer_utils --backend "
                         "tensorflow export MODEL ...")


def check_export_path(path: str | os.PathLike, format: str, overwrite: bool = False) -> Path:
    """`path` as a Path when `format` can be written there: its suffix, the output rule (`files.check_output`)."""
    path = Path(path).expanduser()
    suffix = SUFFIXES[_check_format(format)]
    if suffix is not None and path.suffix.lower() != suffix:
        raise ValueError(f"A {format} export is one file ending in {suffix}; got '{path}'. Name it e.g. model{suffix}.")
    return files.check_output(path, "folder" if suffix is None else "file", overwrite)


def export_model(model, path: str | os.PathLike, format: str, overwrite: bool = False) -> Path:
    """Write the Keras `model` to `path` in `format` (one of `FORMATS`), atomically; return the path."""
    import keras

    path = check_export_path(path, format, overwrite)
    _check_backend(format)
    require_packages(format, "export")
    if len(model.inputs) != 1:
        raise ValueError(f"Only single-input models can be exported; '{model.name}' has {len(model.inputs)} inputs.")
    # Keras's random augmentation layers run in training mode in a plain call, which `Model.export`
    # traces; pinning training=False keeps random ops (which the converters reject) out of the graph.
    pixels = keras.Input(shape=model.input_shape[1:], dtype=model.inputs[0].dtype, name="pixels")
    inference = keras.Model(pixels, model(pixels, training=False), name=f"{model.name}_inference")

    def write(temporary: Path) -> None:
        with _quiet_converter_logs():
            if format == "onnx":
                from fer_utils import backend

                backend.export_onnx(inference, temporary, inference.input_shape[1:])
            else:
                signature = [keras.InputSpec(shape=(None, *inference.input_shape[1:]), dtype=pixels.dtype, name="pixels")]
                keras_format = "tf_saved_model" if format == "saved_model" else format
                inference.export(str(temporary), format=keras_format, verbose=False, input_signature=signature)

    try:
        if SUFFIXES[format] is not None:
            files.record_output(path)
            return files.atomic_write_path(path, write, suffix=files.TEMPORARY_SUFFIX + SUFFIXES[format])
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=files.TEMPORARY_SUFFIX))
        try:
            write(temporary)
            files.record_output(*(item for item in temporary.rglob("*") if item.is_file()), folder=temporary)
            os.chmod(temporary, files.FILE_MODE | (files.FILE_MODE & 0o444) >> 2)  # mkdtemp's folder is private
            if path.exists():
                shutil.rmtree(path)  # holds only what an earlier export wrote (check_output)
            os.replace(temporary, path)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
    except Exception as error:  # TensorFlow's SaveV2 reports a full disk as ResourceExhaustedError
        full = type(error).__name__ == "ResourceExhaustedError" or "No space left" in str(error)
        if full or isinstance(error, OSError):
            raise files.write_error(OSError(errno.ENOSPC, str(error)) if full else error, path) from None
        raise
    return path


@contextlib.contextmanager
def _quiet_converter_logs():
    """Converter loggers at errors only while a converter runs (they log every rewrite); also silences numpy's
    warning about `np.object`, which Keras's numpy-2 patch of tf2onnx probes."""
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
    """Load an export with its own runtime; return a function from pixels 0..255, (batch, 48, 48[, 1]), to
    float32 probabilities. `threads`: ONNX Runtime's and LiteRT's CPU threads (None: their default)."""
    _check_format(format)
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"No {format} export at '{path}'. Write one with `python -m fer_utils export`.")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}.")
    require_packages(format, "run")
    if format == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        return lambda images: np.asarray(session.run(None, {input_name: _as_batch(images)})[0], dtype=np.float32)
    if format == "litert":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        input_index = interpreter.get_input_details()[0]["index"]
        output_index = interpreter.get_output_details()[0]["index"]
        interpreter.allocate_tensors()

        def predict_litert(images) -> np.ndarray:
            batch = _as_batch(images)
            if tuple(interpreter.get_input_details()[0]["shape"]) != batch.shape:  # a new batch size
                interpreter.resize_tensor_input(input_index, batch.shape)
                interpreter.allocate_tensors()
            interpreter.set_tensor(input_index, batch)
            interpreter.invoke()
            return np.array(interpreter.get_tensor(output_index), dtype=np.float32)

        return predict_litert
    import keras

    _check_backend(format)  # TFSMLayer runs on the TensorFlow backend only
    layer = keras.layers.TFSMLayer(str(path), call_endpoint="serve")
    return lambda images: np.asarray(keras.ops.convert_to_numpy(layer(_as_batch(images))), dtype=np.float32)


def _as_batch(images) -> np.ndarray:
    batch = np.asarray(images, dtype=np.float32)
    batch = batch[..., None] if batch.ndim == 3 else batch
    if batch.ndim != 4:
        raise ValueError(f"Expected a batch of images (batch, 48, 48, 1); got an array of shape {batch.shape}.")
    return batch


def max_difference(model, predict: Callable[[np.ndarray], np.ndarray], images) -> float:
    """The largest absolute difference between the Keras model's and an export's probabilities on `images`."""
    batch = _as_batch(images)
    return float(np.max(np.abs(predict(batch) - models.predict(model, batch))))
