"""Backend-specific code: the one module of the package that imports tensorflow, jax or torch.

Everything else speaks Keras 3, which runs on TensorFlow (the default), JAX and PyTorch alike. The
few things Keras does not expose live here, each with one implementation per backend, chosen by
the backend Keras was started with (`active_backend`):

| function | tensorflow | jax | torch |
| --- | --- | --- | --- |
| `gpu_names` | `tf.config` device details | `jax.devices("gpu")` | `torch.cuda` |
| `enable_memory_growth` | per-GPU memory growth | no preallocation | (grows by default) |
| `distribution` | `MirroredStrategy` on several GPUs | `keras.distribution.DataParallel` | one device |
| `enable_op_determinism` | `enable_op_determinism` | (XLA's CPU ops are) | `use_deterministic_algorithms` |
| `class_score_gradients` | `tf.GradientTape` | `jax.grad` | `torch.autograd.grad` |
| `export_onnx` | tf2onnx on a frozen graph | (Keras's own exporter) | (Keras's own exporter) |

A backend is fixed when Keras is first imported: `select_backend` sets `KERAS_BACKEND` before
that (the notebooks' `BACKEND` parameter), and refuses a change once Keras is loaded. The
frameworks are imported inside each function, so importing this module is free.

It is also the one place that keeps TensorFlow's C++ log lines out of notebooks and consoles:
`quiet_tensorflow()` (called by `notebook.setup` and the command line before anything imports
TensorFlow) sets `TF_CPP_MIN_LOG_LEVEL=3` and imports TensorFlow with the process's stderr
filtered. Level 3 alone is not enough: the CUDA stub logs "Could not find cuda drivers" through
absl *while TensorFlow is imported*, before TensorFlow reads the variable, so that import runs with
file descriptor 2 captured, and any captured line that is not known start-up noise is passed on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Callable, ContextManager

BACKENDS = ("tensorflow", "jax", "torch")
BACKEND_VARIABLE = "KERAS_BACKEND"
DEFAULT_BACKEND = "tensorflow"
LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"

# Framework log lines no reader of a notebook or console should see (tests scan for these).
LOG_NOISE_PATTERNS = (
    r"All log messages before absl::InitializeLog\(\)",
    r"oneDNN custom operations are on",
    r"cudart_stub\.cc",
    r"Could not find cuda drivers",
    r"failed call to cuInit",
    r"NodeDef mentions attribute",
    r"triggered tf\.function retracing",
    r"This TensorFlow binary is optimized to use available CPU instructions",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [\w./-]+:\d+\]",  # any other absl/TSL C++ log line
)
LOG_NOISE = re.compile("|".join(LOG_NOISE_PATTERNS), re.MULTILINE)


def quiet_tensorflow(import_now: bool = True) -> None:
    """Keep TensorFlow's C++ start-up and runtime log lines off stderr; call before TF is imported.

    Sets `TF_CPP_MIN_LOG_LEVEL=3` (unless the user set it) and, if Keras runs on TensorFlow and
    TensorFlow is not imported yet, imports it with file descriptor 2 captured, dropping the lines matching `LOG_NOISE` and
    passing any other line on. Calling it again, after TensorFlow was imported, or with
    `import_now=False` (for code that may never need TensorFlow), only sets the variable.
    """
    os.environ.setdefault(LOG_LEVEL_VARIABLE, "3")
    if not import_now or "tensorflow" in sys.modules or active_backend() != "tensorflow":
        return
    with _stderr_filtered():
        import tensorflow  # noqa: F401


@contextlib.contextmanager
def _stderr_filtered():
    """Capture what is written to file descriptor 2 inside the block; re-emit all but `LOG_NOISE`."""
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 (some embedded interpreters): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError):
            pass
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
    kept = [line for line in text.splitlines() if line.strip() and not LOG_NOISE.search(line)]
    if kept:
        print("\n".join(kept), file=sys.stderr)


# =============================================================================================
# Which backend
# =============================================================================================
def active_backend() -> str:
    """The Keras backend of this process: Keras's own once it is imported, else what it will pick.

    Before Keras is imported this follows Keras's rule without importing it (which would fix the
    backend): the `KERAS_BACKEND` variable, else the "backend" entry of Keras's keras.json, else
    TensorFlow.
    """
    if "keras" in sys.modules:
        import keras

        return keras.config.backend()
    configured = os.environ.get(BACKEND_VARIABLE)
    if configured:
        return configured
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        return json.loads((Path(keras_home) / "keras.json").read_text()).get("backend") or DEFAULT_BACKEND
    except (OSError, ValueError):
        return DEFAULT_BACKEND


def select_backend(backend: str | None) -> str:
    """Make `backend` ("tensorflow", "jax" or "torch") the one Keras starts with; return the active one.

    None keeps what Keras would pick (`active_backend`). Call it before anything imports Keras:
    once Keras is loaded its backend cannot change, so asking for another one is a RuntimeError
    that says to restart the kernel. A backend whose package is not installed is a ValueError
    naming the pip command.
    """
    if backend is None:
        return active_backend()
    backend = str(backend).strip().lower()
    if backend not in BACKENDS:
        raise ValueError(f"Unknown Keras backend '{backend}'; choose one of {', '.join(BACKENDS)}.")
    if "keras" in sys.modules:
        running = active_backend()
        if running != backend:
            raise RuntimeError(
                f"Keras is already running on {running} in this process, so it cannot switch to {backend}. "
                f"Restart the kernel and run the notebook from the top (the backend is chosen before Keras "
                f"is imported), or set BACKEND = '{running}'."
            )
        return backend
    if importlib.util.find_spec(backend) is None:
        raise ValueError(f"The Keras backend '{backend}' needs the {backend} package: pip install {backend}")
    os.environ[BACKEND_VARIABLE] = backend
    return backend


# =============================================================================================
# Devices
# =============================================================================================
def gpu_names() -> list[str]:
    """Return one human-readable name per visible GPU (e.g. ["Tesla T4", "Tesla T4"]); [] on CPU."""
    backend = active_backend()
    if backend == "jax":
        import jax

        try:
            return [str(device.device_kind) for device in jax.devices("gpu")]
        except RuntimeError:  # no GPU platform in this jaxlib, or no GPU
            return []
    if backend == "torch":
        import torch

        if not torch.cuda.is_available():
            return []
        return [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    import tensorflow as tf

    names = []
    for device in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(device)
        except (ValueError, RuntimeError):
            details = {}
        names.append(str(details.get("device_name") or device.name))
    return names


def enable_memory_growth() -> None:
    """Let the backend take GPU memory as needed instead of all of it up front (no-op on CPU).

    TensorFlow: memory growth per GPU. JAX: no preallocation of 75% of the GPU (read when JAX
    first uses the GPU, so it only helps before that). PyTorch's allocator grows by default.
    Must run before the first GPU operation; later calls change nothing.
    """
    backend = active_backend()
    if backend == "jax":
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        return
    if backend != "tensorflow":
        return
    import tensorflow as tf

    for device in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(device, True)
        except RuntimeError:
            # The GPU is already initialised; its memory policy can no longer change.
            pass


@dataclasses.dataclass(frozen=True)
class Distribution:
    """How training spreads over the visible devices.

    Attributes:
        replicas: How many devices share each batch (1 on a CPU or one GPU).
        scope: A context manager factory: build, compile and fit models inside `scope()`.
        description: One line for logs, e.g. "MirroredStrategy over 2 GPUs".
    """

    replicas: int
    scope: Callable[[], ContextManager]
    description: str


def distribution() -> Distribution:
    """The data-parallel setup for the visible devices.

    Several GPUs (e.g. Kaggle's 2x T4) split each batch between them: TensorFlow through a
    `MirroredStrategy`, JAX through `keras.distribution.DataParallel`. PyTorch under Keras trains
    on one device. One GPU or the CPU gets a no-op scope.
    """
    backend = active_backend()
    gpus = gpu_names()
    if len(gpus) > 1 and backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()
        return Distribution(int(strategy.num_replicas_in_sync), strategy.scope,
                            f"MirroredStrategy over {strategy.num_replicas_in_sync} GPUs")
    if len(gpus) > 1 and backend == "jax":
        import keras

        devices = keras.distribution.list_devices("gpu")
        data_parallel = keras.distribution.DataParallel(devices=devices)
        return Distribution(len(devices), data_parallel.scope, f"DataParallel over {len(devices)} GPUs")
    device = "one GPU" if gpus else "the CPU"
    return Distribution(1, contextlib.nullcontext, f"{device} ({backend})")


def enable_op_determinism() -> None:
    """Make the backend's ops deterministic (same seed -> same result), where it offers that.

    Cheap on the CPU, where it is used. TensorFlow: op determinism. JAX: XLA's CPU ops already
    are. PyTorch: deterministic algorithms (warning, not failing, where an op has none). On GPUs
    some kernels have no deterministic version, so the training code does not call it there.
    """
    backend = active_backend()
    if backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


# =============================================================================================
# Gradients (Grad-CAM)
# =============================================================================================
def class_score_gradients(feature_model, score_fn, inputs, class_indices=None):
    """Feature maps and the gradient of one class score per image with respect to them (for Grad-CAM).

    `feature_model(inputs, training=False)` returns `(feature_maps, features)`, a functional Keras
    model; `score_fn(features)` returns class scores of shape (N, num_classes). For each image the
    score of `class_indices[i]` (default: its highest-scoring class) is differentiated with respect
    to that image's feature maps; images in a batch do not interact at inference, so one backward
    pass serves the batch. Returns numpy arrays `(feature_maps, gradients, class_indices)`.
    """
    backend = active_backend()
    if backend == "jax":
        return _jax_class_score_gradients(feature_model, score_fn, inputs, class_indices)
    if backend == "torch":
        return _torch_class_score_gradients(feature_model, score_fn, inputs, class_indices)
    return _tensorflow_class_score_gradients(feature_model, score_fn, inputs, class_indices)


def _tensorflow_class_score_gradients(feature_model, score_fn, inputs, class_indices):
    import numpy as np
    import tensorflow as tf

    inputs = tf.convert_to_tensor(inputs)
    with tf.GradientTape() as tape:
        # Watching the input records every operation after it, so the gradient reaches the
        # intermediate feature maps even when the backbone's weights are frozen (not trainable).
        tape.watch(inputs)
        feature_maps, features = feature_model(inputs, training=False)
        scores = score_fn(features)
        if class_indices is None:
            class_indices = tf.argmax(scores, axis=-1)
        class_indices = tf.cast(class_indices, tf.int32)
        chosen_scores = tf.gather(scores, class_indices, axis=1, batch_dims=1)
    gradients = tape.gradient(chosen_scores, feature_maps)
    return feature_maps.numpy(), gradients.numpy(), np.asarray(class_indices)


def _jax_class_score_gradients(feature_model, score_fn, inputs, class_indices):
    """JAX differentiates functions, not recorded tensors: the part of the model after the feature
    maps becomes a function of them. It is cut from the model's own graph with the feature maps as
    an extra input, so paths that bypass them (a residual branch) still start from the image."""
    import jax
    import jax.numpy as jnp
    import keras
    import numpy as np

    inputs = jnp.asarray(inputs)
    maps_tensor, features_tensor = feature_model.outputs
    if features_tensor is maps_tensor:  # the feature maps are the backbone's output itself
        rest = None
    else:
        rest = keras.Model([*feature_model.inputs, maps_tensor], features_tensor)
    feature_maps = feature_model(inputs, training=False)[0]

    def scores_of(maps):
        return score_fn(maps if rest is None else rest([inputs, maps], training=False))

    scores = scores_of(feature_maps)
    if class_indices is None:
        class_indices = jnp.argmax(scores, axis=-1)
    class_indices = jnp.asarray(class_indices, dtype=jnp.int32)

    def chosen_total(maps):
        # Each image's chosen score depends on its own maps only, so the gradient of the sum is
        # every image's own gradient.
        return jnp.sum(jnp.take_along_axis(scores_of(maps), class_indices[:, None], axis=1))

    gradients = jax.grad(chosen_total)(feature_maps)
    return np.asarray(feature_maps), np.asarray(gradients), np.asarray(class_indices)


def _torch_class_score_gradients(feature_model, score_fn, inputs, class_indices):
    import keras
    import numpy as np
    import torch

    inputs = keras.ops.convert_to_tensor(inputs)
    with torch.enable_grad():
        # The input requires a gradient so every operation after it is recorded, frozen weights or not.
        inputs = inputs.detach().requires_grad_(True)
        feature_maps, features = feature_model(inputs, training=False)
        scores = score_fn(features)
        if class_indices is None:
            class_indices = torch.argmax(scores, dim=-1)
        class_indices = torch.as_tensor(np.asarray(keras.ops.convert_to_numpy(class_indices)), dtype=torch.long,
                                        device=scores.device)
        chosen_scores = torch.gather(scores, 1, class_indices[:, None])
        (gradients,) = torch.autograd.grad(chosen_scores.sum(), feature_maps)
    return (feature_maps.detach().cpu().numpy(), gradients.detach().cpu().numpy(),
            class_indices.detach().cpu().numpy())


# =============================================================================================
# Export
# =============================================================================================
def export_onnx(model, path, input_shape, opset: int | None = None) -> None:
    """Write `model`, called with `training=False`, to the ONNX file `path` through tf2onnx (TensorFlow backend).

    `input_shape` is one input's shape without the batch axis; the batch axis stays free. The
    graph is frozen first (variables and captured constants become ONNX initializers). Keras's own
    ONNX export hands tf2onnx the unfrozen function, which turns constants captured by a layer,
    such as a `Normalization` layer's fixed mean and variance (the caffe-style preprocessing of
    VGG16 and ResNet50), into extra graph inputs that no caller feeds. The ONNX graph's input is
    named "pixels" and its output "probabilities".
    """
    import tensorflow as tf
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    try:  # Keras's fix of tf2onnx's constant folding under numpy 2, where this Keras has it.
        from keras.src.export.tf2onnx_lib import patch_tf2onnx
    except ImportError:
        patch_tf2onnx = None
    if patch_tf2onnx is not None:
        patch_tf2onnx()
    signature = tf.TensorSpec((None, *input_shape), tf.float32, name="pixels")
    function = tf.function(lambda pixels: model(pixels, training=False), input_signature=[signature])
    frozen = convert_variables_to_constants_v2(function.get_concrete_function())
    inputs, outputs = [t.name for t in frozen.inputs], [t.name for t in frozen.outputs]
    tf2onnx.convert.from_graph_def(
        frozen.graph.as_graph_def(), input_names=inputs, output_names=outputs, opset=opset,
        tensors_to_rename={inputs[0]: "pixels", outputs[0]: "probabilities"}, output_path=str(path),
    )
