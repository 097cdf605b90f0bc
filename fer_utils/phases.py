"""Which layers train in which phase, and the two halves of a model the cached-feature path uses.

- `set_phase_trainable` freezes and unfreezes a model built by `fer_utils.models.build_model` for
  the "head", "finetune" and "end_to_end" phases.
- `feature_model` (pixels -> pooled backbone features) and `head_model` (features -> class
  probabilities, sharing the full model's head layers) let the head phase run the frozen backbone
  once and train the head on cached features.
"""

from __future__ import annotations

import numpy as np

from fer_utils.training_config import PHASE_END_TO_END, PHASE_FINETUNE, PHASE_HEAD


def set_phase_trainable(model, phase: str, finetune_prefixes=()) -> None:
    """Freeze and unfreeze `model`'s layers for `phase`.

    - "head": the backbone is frozen entirely; the head (head_dense, predictions) trains.
    - "finetune": backbone layers whose names start with one of `finetune_prefixes` train,
      except BatchNormalization layers, which stay frozen (and in inference mode).
    - "end_to_end": everything trains.
    """
    import keras

    backbone = model.get_layer("backbone")
    if phase == PHASE_END_TO_END:
        model.trainable = True
        backbone.trainable = True
        for layer in backbone.layers:
            layer.trainable = True
        return
    if phase == PHASE_HEAD:
        backbone.trainable = False
        return
    if phase != PHASE_FINETUNE:
        raise ValueError(f"Unknown phase '{phase}'; expected '{PHASE_HEAD}', '{PHASE_FINETUNE}' or '{PHASE_END_TO_END}'.")
    prefixes = tuple(finetune_prefixes)
    if not prefixes:
        raise ValueError("Fine-tuning needs at least one layer-name prefix (e.g. 'block5' for vgg16).")
    backbone.trainable = True
    unfrozen = 0
    for layer in backbone.layers:
        is_batch_norm = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = layer.name.startswith(prefixes) and not is_batch_norm
        unfrozen += bool(layer.trainable and layer.weights)
    if unfrozen == 0:
        raise ValueError(
            f"No backbone layer with weights starts with {prefixes}; nothing would be fine-tuned. "
            f"Layer names look like {[layer.name for layer in backbone.layers[-5:]]}."
        )


def trainable_layer_names(model) -> list[str]:
    """Names of the layers with trainable weights, the backbone's listed as 'backbone/<name>'."""
    names = []
    for layer in model.layers:
        if layer.name == "backbone":
            names += [f"backbone/{inner.name}" for inner in layer.layers if inner.trainable_weights]
        elif layer.trainable_weights:
            names.append(layer.name)
    return names


def feature_model(model):
    """A model from raw pixels to the pooled backbone features ("gap"), for inference only."""
    import keras

    return keras.Model(model.input, model.get_layer("gap").output, name="features")


def head_model(model):
    """A model from pooled features to class probabilities that shares `model`'s head layers.

    Training it trains the full model's head: the layers (and their weights) are the same objects.
    """
    import keras

    width = int(model.get_layer("gap").output.shape[-1])
    features = keras.Input(shape=(width,), name="features")
    x = features
    if any(layer.name == "head_norm" for layer in model.layers):
        x = model.get_layer("head_norm")(x)
    x = model.get_layer("head_dense")(x)
    x = model.get_layer("head_dropout")(x)
    outputs = model.get_layer("predictions")(x)
    return keras.Model(features, outputs, name="head")


def compute_features(model, images, batch_size: int = 256) -> np.ndarray:
    """Run the frozen backbone once over `images` and return the pooled features (float32)."""
    from fer_utils import models

    return np.asarray(models.predict(feature_model(model), images, batch_size=batch_size), dtype=np.float32)
