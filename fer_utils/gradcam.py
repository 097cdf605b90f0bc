"""Grad-CAM heatmaps: where in a face the model found the evidence for a class.

For models built by `fer_utils.models.build_model` (a nested "backbone" model, then the head), and for
averaging ensembles of them (the shipped model: the mean of the members' heatmaps). The gradient
itself is `fer_utils.backend.class_score_gradients`.
"""

from __future__ import annotations

import numpy as np


def default_gradcam_layer(model) -> str:
    """The last layer of the nested "backbone" with a 4-D output, passing over pooling and 1x1 maps.

    Pooling halves the resolution and adds no evidence (at 48 px VGG16's last pooled map is one pixel),
    and a one-pixel map cannot say where anything is. So this is the last convolution block's output
    (VGG16 "block5_conv3", ResNet50 "conv5_block3_out", small_cnn "stage4_conv2_relu").
    """
    import keras

    backbone = _backbone_of(model)
    candidates = [layer for layer in backbone.layers if _is_feature_map_layer(layer)]
    if not candidates:
        raise ValueError(f"The backbone '{backbone.name}' has no layer with a 4-D output to compute Grad-CAM on.")
    pooling = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
    preferred = [layer for layer in candidates
                 if not isinstance(layer, pooling) and tuple(layer.output.shape[1:3]) != (1, 1)]
    return (preferred or candidates)[-1].name


def _is_feature_map_layer(layer) -> bool:
    import keras

    try:
        return not isinstance(layer, keras.layers.InputLayer) and len(layer.output.shape) == 4
    except (AttributeError, ValueError):
        return False


def _ensemble_members(model) -> list:
    """The nested models an ensemble averages (each with a "backbone"), or [] for a single model."""
    import keras

    if not model.layers or not isinstance(model.layers[-1], keras.layers.Average):
        return []
    if any(layer.name == "backbone" for layer in model.layers):
        return []
    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return members if members and all(any(inner.name == "backbone" for inner in member.layers) for member in members) else []


def _backbone_of(model):
    import keras

    try:
        backbone = model.get_layer("backbone")
    except ValueError as error:
        raise ValueError(
            f"Model '{model.name}' has no layer named 'backbone'; Grad-CAM needs the project's model structure "
            "(fer_utils.models.build_model: ... -> 'backbone' (nested model) -> 'gap' -> ... -> 'predictions')."
        ) from error
    if not isinstance(backbone, keras.Model):
        raise ValueError(f"Layer 'backbone' of model '{model.name}' is not a nested Keras model.")
    return backbone


def gradcam_heatmaps(model, images, layer_name: str | None = None, class_index=None, batch_size: int = 32) -> np.ndarray:
    """Grad-CAM heatmaps (N, H, W) in [0, 1], one per image, at the images' own size.

    For a feature-map layer of the backbone (default `default_gradcam_layer`), the gradient of the
    class score (the logit of `class_index`: an int, one per image, or by default the predicted class)
    is averaged over space to weight each channel; the ReLU of the weighted channel sum is resized to
    the image and divided by its maximum (all zeros where there is no positive evidence).
    """
    import keras

    from fer_utils import backend

    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be a batch of shape (N, height, width, channels); got {images.shape}.")
    members = _ensemble_members(model)
    if members:
        if class_index is None:  # the ensemble's class, which a member may not predict itself
            from fer_utils.models import predict

            class_index = predict(model, images, batch_size=batch_size).argmax(axis=-1)
        mean = np.mean([gradcam_heatmaps(member, images, layer_name, class_index, batch_size) for member in members], axis=0)
        return _normalised(mean)
    backbone = _backbone_of(model)
    layer_name = layer_name or default_gradcam_layer(model)
    choices = [layer.name for layer in backbone.layers if _is_feature_map_layer(layer)]
    if layer_name not in choices:
        raise ValueError(f"The backbone '{backbone.name}' has no feature-map layer '{layer_name}'. "
                         f"Layers with 4-D outputs: {choices}.")
    feature_model = keras.Model(backbone.inputs, [backbone.get_layer(layer_name).output, backbone.output])
    to_backbone, head = _models_around_backbone(model)

    def class_scores(features):
        # Dropout is the identity at inference, and the final softmax's logits are used, as in the
        # Grad-CAM paper: softmax saturates gradients.
        for layer in head:
            if layer is head[-1] and isinstance(layer, keras.layers.Dense) and \
                    getattr(layer.activation, "__name__", "") == "softmax":
                features = keras.ops.matmul(keras.ops.cast(features, layer.kernel.dtype), layer.kernel)
                features = features + layer.bias if layer.bias is not None else features
            elif not isinstance(layer, keras.layers.Dropout):
                features = layer(features, training=False)
        return features

    classes = None
    if class_index is not None:
        classes = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (len(images),))
        num_classes = int(model.output_shape[-1])
        if classes.min() < 0 or classes.max() >= num_classes:
            raise ValueError(f"class_index must lie in 0..{num_classes - 1}; got {class_index}.")
    heatmaps = np.zeros(images.shape[:3], dtype=np.float32)
    for start in range(0, len(images), batch_size):
        batch = to_backbone(keras.ops.convert_to_tensor(images[start : start + batch_size]), training=False)
        batch_classes = None if classes is None else classes[start : start + batch_size]
        feature_maps, gradients, _ = backend.class_score_gradients(feature_model, class_scores, batch, batch_classes)
        # One weight per channel: the spatial mean of the gradient (the paper's global-average pooling).
        cams = np.maximum((feature_maps * gradients.mean(axis=(1, 2), keepdims=True)).sum(axis=-1), 0.0)
        resized = keras.ops.image.resize(cams[..., None], images.shape[1:3], interpolation="bilinear")
        heatmaps[start : start + batch_size] = _normalised(np.maximum(keras.ops.convert_to_numpy(resized)[..., 0], 0.0))
    return np.clip(heatmaps, 0.0, 1.0)


def _normalised(maps: np.ndarray) -> np.ndarray:
    peaks = maps.max(axis=(1, 2), keepdims=True)
    return np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0)


def _models_around_backbone(model):
    """(a model from the raw pixels to the backbone's input, the head layers after the backbone). The first is
    cut from the model's own graph before "backbone", so every layer before it is reproduced exactly."""
    import keras

    position = [layer.name for layer in model.layers].index("backbone")
    before = model.layers[position - 1] if position > 0 else None
    if before is None or isinstance(before, (keras.layers.InputLayer, keras.Model)):
        raise ValueError(f"Model '{model.name}' needs a plain layer (the contract's 'preprocess') right before "
                         "'backbone' for Grad-CAM to find the backbone's input.")
    head = list(model.layers[position + 1 :])
    if not head:
        raise ValueError(f"Model '{model.name}' has no layers after 'backbone'; expected the classification head.")
    return keras.Model(model.inputs, before.output), head
