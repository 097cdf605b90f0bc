"""Backend-specific code: the one module that imports tensorflow, jax or torch, each inside a function,
for what Keras 3 does not expose (GPU names, op determinism, Grad-CAM gradients, ONNX export)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import sys
import tempfile
from pathlib import Path

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
    """Keep TensorFlow's C++ log lines off stderr: set `TF_CPP_MIN_LOG_LEVEL=3` and (unless `import_now`
    is False) import TensorFlow now, passing on only stderr lines that are not `LOG_NOISE`. Level 3
    alone is not enough: the CUDA stub logs through absl while TensorFlow is imported."""
    os.environ.setdefault(LOG_LEVEL_VARIABLE, "3")
    # On every backend: Keras's `set_random_seed` imports TensorFlow whenever it is installed.
    if not import_now or "tensorflow" in sys.modules or importlib.util.find_spec("tensorflow") is None:
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
        with contextlib.suppress(AttributeError, ValueError):
            sys.stderr.flush()
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


# --- Which backend --------------------------------------------------------------------------------
def active_backend() -> str:
    """The Keras backend of this process: Keras's own once imported, else what it will pick without
    importing it (which would fix it): `$KERAS_BACKEND`, else keras.json's "backend", else TensorFlow."""
    if "keras" in sys.modules:
        import keras

        return keras.config.backend()
    if os.environ.get(BACKEND_VARIABLE):
        return os.environ[BACKEND_VARIABLE]
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        return json.loads((Path(keras_home) / "keras.json").read_text()).get("backend") or DEFAULT_BACKEND
    except (OSError, ValueError):
        return DEFAULT_BACKEND


def select_backend(backend: str | None) -> str:
    """Make `backend` ("tensorflow", "jax", "torch"; None: `active_backend`) the one Keras starts with,
    before anything imports Keras (after, another backend is a RuntimeError). Returns the backend."""
    if backend is None:
        return active_backend()
    backend = str(backend).strip().lower()
    if backend not in BACKENDS:
        raise ValueError(f"Unknown Keras backend '{backend}'; choose one of {', '.join(BACKENDS)}.")
    if "keras" in sys.modules:
        running = active_backend()
        if running != backend:
            raise RuntimeError(f"Keras is already running on {running} in this process, so it cannot switch to "
                               f"{backend}. Restart the kernel and run the notebook from the top (the backend is "
                               f"chosen before Keras is imported), or set BACKEND = '{running}'.")
        return backend
    if importlib.util.find_spec(backend) is None:
        raise ValueError(f"The Keras backend '{backend}' needs the {backend} package: pip install {backend}")
    os.environ[BACKEND_VARIABLE] = backend
    return backend


# --- Devices --------------------------------------------------------------------------------------
def gpu_names() -> list[str]:
    """One name per visible GPU (e.g. ["Tesla T4", "Tesla T4"]); [] on a CPU."""
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

    return [str(tf.config.experimental.get_device_details(device).get("device_name") or device.name)
            for device in tf.config.list_physical_devices("GPU")]


def enable_op_determinism() -> None:
    """Same seed, same result, where the backend offers it (JAX's CPU ops already are)."""
    backend = active_backend()
    if backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


# --- Gradients (Grad-CAM) -------------------------------------------------------------------------
def class_score_gradients(feature_model, score_fn, inputs, class_indices=None):
    """Grad-CAM's numpy `(feature_maps, gradients, class_indices)`: the gradient, with respect to the maps, of each
    image's `score_fn(features)` score for `class_indices[i]` (default: its top class)."""
    gradients = {"jax": _jax_class_score_gradients, "torch": _torch_class_score_gradients}.get(
        active_backend(), _tensorflow_class_score_gradients)
    return gradients(feature_model, score_fn, inputs, class_indices)


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
    # JAX differentiates functions: the model after the feature maps is cut from its own graph with the
    # maps as an extra input, so paths that bypass them (a residual branch) still start from the image.
    import jax
    import jax.numpy as jnp
    import keras
    import numpy as np

    inputs = jnp.asarray(inputs)
    maps_out, features_out = feature_model.outputs
    rest = None if features_out is maps_out else keras.Model([*feature_model.inputs, maps_out], features_out)
    feature_maps = feature_model(inputs, training=False)[0]

    def scores_of(maps):
        return score_fn(maps if rest is None else rest([inputs, maps], training=False))

    scores = scores_of(feature_maps)
    if class_indices is None:
        class_indices = jnp.argmax(scores, axis=-1)
    class_indices = jnp.asarray(class_indices, dtype=jnp.int32)

    def chosen_total(maps):
        # Each image's score depends on its own maps only: the gradient of the sum is each image's own.
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


# --- Export ---------------------------------------------------------------------------------------
def export_onnx(model, path, input_shape, opset: int | None = None) -> None:
    """Write `model` (inference mode) to the ONNX file `path` via tf2onnx; input "pixels" of shape
    (batch, *input_shape), output "probabilities". TensorFlow backend only."""
    import tensorflow as tf
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    with contextlib.suppress(ImportError):  # Keras's fix of tf2onnx's constant folding under numpy 2
        from keras.src.export.tf2onnx_lib import patch_tf2onnx

        patch_tf2onnx()
    signature = tf.TensorSpec((None, *input_shape), tf.float32, name="pixels")
    function = tf.function(lambda pixels: model(pixels, training=False), input_signature=[signature])
    # Frozen, because Keras's own ONNX export leaves constants captured by a layer (the fixed mean and
    # variance of VGG16/ResNet50 preprocessing) as extra inputs that no caller feeds.
    frozen = convert_variables_to_constants_v2(function.get_concrete_function())
    inputs, outputs = [t.name for t in frozen.inputs], [t.name for t in frozen.outputs]
    tf2onnx.convert.from_graph_def(
        frozen.graph.as_graph_def(), input_names=inputs, output_names=outputs, opset=opset,
        tensors_to_rename={inputs[0]: "pixels", outputs[0]: "probabilities"}, output_path=str(path),
    )
