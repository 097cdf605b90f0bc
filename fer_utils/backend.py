"""TensorFlow-specific helpers: the one module of the package that imports `tensorflow`.

Everything else speaks Keras 3. The few things Keras does not expose (listing GPUs, multi-GPU
distribution, op determinism) live here, so a reader sees in one place what ties the package to
the TensorFlow backend. TensorFlow is imported inside each function, so importing this module is
free.

It is also the one place that keeps TensorFlow's C++ log lines out of notebooks and consoles:
`quiet_tensorflow()` (called by `notebook.setup` and the command line before anything imports
TensorFlow) sets `TF_CPP_MIN_LOG_LEVEL=3` and imports TensorFlow with the process's stderr
filtered. Level 3 alone is not enough: the CUDA stub logs "Could not find cuda drivers" through
absl *while TensorFlow is imported*, before TensorFlow reads the variable, so that import runs with
file descriptor 2 captured, and any captured line that is not known start-up noise is passed on.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

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

    Sets `TF_CPP_MIN_LOG_LEVEL=3` (unless the user set it) and, if TensorFlow is not imported yet,
    imports it with file descriptor 2 captured, dropping the lines matching `LOG_NOISE` and
    passing any other line on. Calling it again, after TensorFlow was imported, or with
    `import_now=False` (for code that may never need TensorFlow), only sets the variable.
    """
    os.environ.setdefault(LOG_LEVEL_VARIABLE, "3")
    if not import_now or "tensorflow" in sys.modules:
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


def gpu_names() -> list[str]:
    """Return one human-readable name per visible GPU (e.g. ["Tesla T4", "Tesla T4"]); [] on CPU."""
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
    """Let TensorFlow grow GPU memory as needed instead of grabbing it all (no-op on CPU).

    Must run before the first GPU operation; later calls are ignored.
    """
    import tensorflow as tf

    for device in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(device, True)
        except RuntimeError:
            # The GPU is already initialised; its memory policy can no longer change.
            pass


def distribution_strategy():
    """Return the `tf.distribute` strategy for the visible devices.

    Several GPUs (e.g. Kaggle's 2x T4) get a `MirroredStrategy` that splits each batch across
    them; one GPU or the CPU gets TensorFlow's default (no-op) strategy. Build and compile models
    inside `strategy.scope()`.
    """
    import tensorflow as tf

    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def enable_op_determinism() -> None:
    """Make TensorFlow ops deterministic (same seed -> same result).

    Cheap on the CPU, where it is used. On GPUs some kernels have no deterministic version, so
    the training code does not call it there.
    """
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


def class_score_gradients(feature_model, score_fn, inputs, class_indices=None):
    """Feature maps and the gradient of one class score per image with respect to them (for Grad-CAM).

    `feature_model(inputs, training=False)` returns `(feature_maps, features)`; `score_fn(features)`
    returns class scores of shape (N, num_classes). For each image the score of `class_indices[i]`
    (default: its highest-scoring class) is differentiated with respect to that image's feature
    maps; images in a batch do not interact at inference, so one backward pass serves the batch.
    Returns numpy arrays `(feature_maps, gradients, class_indices)`.
    """
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


def export_onnx(model, path, input_shape, opset: int | None = None) -> None:
    """Write `model`, called with `training=False`, to the ONNX file `path` through tf2onnx.

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
