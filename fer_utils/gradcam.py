"""Grad-CAM heatmaps: where in a face the model found the evidence for a class.

`gradcam_heatmaps(model, images)` works on models with the project's structure
(`fer_utils.models.build_model`: ... -> "preprocess" -> "backbone" (nested model) -> head ->
"predictions"); `default_gradcam_layer` picks the backbone's last convolution block. On an
ensemble of such models whose probabilities are averaged (the shipped model, `fer_utils.pretrained`),
a heatmap is the mean of its members' heatmaps for the ensemble's class. Keras is
imported inside the functions; the gradient itself (TensorFlow's GradientTape) is computed by
`fer_utils.backend.class_score_gradients`, the only TensorFlow-specific part.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def default_gradcam_layer(model) -> str:
    """The default Grad-CAM layer: the last layer of the nested "backbone" with a 4-D output.

    Pooling layers are passed over (VGG16 and small_cnn's stages end with one): pooling halves
    the resolution and adds no new evidence, and at 48 px VGG16's last pooled map is a single
    pixel. So are maps of a single pixel (small_cnn's last convolution), which cannot say where
    anything is. So this is the last convolution block's output (e.g. VGG16 "block5_conv3",
    ResNet50 "conv5_block3_out", EfficientNetB0 "top_activation", small_cnn "stage4_conv2_relu").
    """
    import keras

    pooling = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
    backbone = _backbone_of(model)
    candidates = [layer for layer in backbone.layers if _is_feature_map_layer(layer)]
    if not candidates:
        raise ValueError(f"The backbone '{backbone.name}' has no layer with a 4-D output to compute Grad-CAM on.")
    preferred = [
        layer for layer in candidates
        if not isinstance(layer, pooling) and tuple(layer.output.shape[1:3]) != (1, 1)
    ]
    return (preferred or candidates)[-1].name


def _is_feature_map_layer(layer) -> bool:
    import keras

    if isinstance(layer, keras.layers.InputLayer):
        return False
    try:
        return len(layer.output.shape) == 4
    except (AttributeError, ValueError):
        return False


def _ensemble_members(model) -> list:
    """The nested models of an ensemble (no "backbone" of its own, an Average of nested models with one); else []."""
    import keras

    names = [layer.name for layer in model.layers]
    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if "backbone" in names or not model.layers or not isinstance(model.layers[-1], keras.layers.Average):
        return []
    return members if members and all("backbone" in [layer.name for layer in member.layers] for member in members) else []


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

    For the chosen feature-map layer of the nested backbone (default: `default_gradcam_layer`), the
    gradient of the class score (the pre-softmax logit of `class_index`, default the predicted
    class; an int or one index per image) with respect to the feature map is averaged over space
    to weight each channel; the weighted sum of channels, passed through ReLU, is upsampled to
    the image size and divided by its maximum. A heatmap with no positive evidence is all zeros.
    """
    import keras

    from fer_utils import backend

    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must be a batch of shape (N, height, width, channels); got {images.shape}.")
    members = _ensemble_members(model)
    if members:
        if class_index is None:  # the ensemble's class, which a member may not predict itself
            class_index = np.asarray(model.predict(images, batch_size=batch_size, verbose=0)).argmax(axis=-1)
        mean = np.mean([gradcam_heatmaps(member, images, layer_name, class_index, batch_size) for member in members], axis=0)
        peaks = mean.max(axis=(1, 2), keepdims=True)
        return np.divide(mean, peaks, out=np.zeros_like(mean), where=peaks > 0)
    backbone = _backbone_of(model)
    layer_name = layer_name or default_gradcam_layer(model)
    try:
        target = backbone.get_layer(layer_name)
    except ValueError as error:
        choices = [layer.name for layer in backbone.layers if _is_feature_map_layer(layer)]
        raise ValueError(
            f"The backbone '{backbone.name}' has no layer '{layer_name}'. Layers with 4-D outputs: {choices}."
        ) from error
    if not _is_feature_map_layer(target):
        raise ValueError(f"Layer '{layer_name}' does not output a 4-D feature map; Grad-CAM needs one.")

    backbone_input_model, after = _models_around_backbone(model)
    feature_model = keras.Model(backbone.inputs, [target.output, backbone.output])

    def class_scores(features):
        # The head after the backbone; dropout is skipped (identity at inference) and the final
        # softmax layer's logits are used, as in the Grad-CAM paper (softmax saturates gradients).
        for layer in after:
            if isinstance(layer, keras.layers.Dropout):
                continue
            if layer is after[-1] and _is_softmax_dense(layer):
                features = keras.ops.matmul(keras.ops.cast(features, layer.kernel.dtype), layer.kernel)
                if layer.bias is not None:
                    features = features + layer.bias
            else:
                features = layer(features, training=False)
        return features

    num_images = images.shape[0]
    class_indices = None
    if class_index is not None:
        class_indices = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (num_images,))
        num_classes = int(model.output_shape[-1])
        if class_indices.min() < 0 or class_indices.max() >= num_classes:
            raise ValueError(f"class_index must lie in 0..{num_classes - 1}; got {class_index}.")
    heatmaps = np.zeros(images.shape[:3], dtype=np.float32)
    for start in range(0, num_images, batch_size):
        batch = backbone_input_model(keras.ops.convert_to_tensor(images[start : start + batch_size]), training=False)
        batch_classes = None if class_indices is None else class_indices[start : start + batch_size]
        feature_maps, gradients, _ = backend.class_score_gradients(feature_model, class_scores, batch, batch_classes)
        # One weight per channel: the spatial mean of the gradient (the paper's global-average pooling).
        channel_weights = gradients.mean(axis=(1, 2), keepdims=True)
        cams = np.maximum((feature_maps * channel_weights).sum(axis=-1), 0.0)
        resized = keras.ops.image.resize(cams[..., None], images.shape[1:3], interpolation="bilinear")
        resized = np.maximum(keras.ops.convert_to_numpy(resized)[..., 0], 0.0)
        peaks = resized.max(axis=(1, 2), keepdims=True)
        heatmaps[start : start + batch_size] = np.divide(resized, peaks, out=np.zeros_like(resized), where=peaks > 0)
    return np.clip(heatmaps, 0.0, 1.0)


def _is_softmax_dense(layer) -> bool:
    import keras

    activation = getattr(layer, "activation", None)
    return isinstance(layer, keras.layers.Dense) and getattr(activation, "__name__", "") == "softmax"


def _models_around_backbone(model) -> tuple[Any, list]:
    """(a model from the raw pixels to the backbone's input, the head layers after the backbone).

    The input part is cut from the model's own graph at the output of the layer just before
    "backbone" (the contract's "preprocess"), so any built-in layers before it, including ones
    with several inputs such as a Concatenate, are reproduced exactly.
    """
    import keras

    names = [layer.name for layer in model.layers]
    position = names.index("backbone")
    before = model.layers[position - 1] if position > 0 else None
    if before is None or isinstance(before, (keras.layers.InputLayer, keras.Model)):
        raise ValueError(
            f"Model '{model.name}' needs a plain layer (the contract's 'preprocess') right before 'backbone' "
            "for Grad-CAM to find the backbone's input."
        )
    after = list(model.layers[position + 1 :])
    if not after:
        raise ValueError(f"Model '{model.name}' has no layers after 'backbone'; expected the classification head.")
    return keras.Model(model.inputs, before.output), after
