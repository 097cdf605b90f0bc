"""TensorFlow-specific helpers: the one module of the package that imports `tensorflow`.

Everything else speaks Keras 3. The few things Keras does not expose (listing GPUs, multi-GPU
distribution, op determinism) live here, so a reader sees in one place what ties the package to
the TensorFlow backend. TensorFlow is imported inside each function, so importing this module is
free.
"""

from __future__ import annotations


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
