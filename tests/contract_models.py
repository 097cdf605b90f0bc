"""Tiny Keras models that follow the project's model structure contract, for evaluation tests.

Layers in order: "pixels" -> "augmentation" -> "resize" -> "gray_to_rgb" -> "preprocess" ->
"backbone" (a nested functional model) -> "gap" -> "head_dense" -> "head_dropout" -> "predictions".
They are untrained (or hand-set) and small, so building, saving and predicting take well under a second.
"""

import numpy as np


def tiny_contract_model(num_classes=7, seed=0, image_size=24):
    """A random small CNN in the contract's structure (two convolutions in the backbone)."""
    import keras

    keras.utils.set_random_seed(seed)
    backbone_input = keras.Input((image_size, image_size, 3), name="backbone_input")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(backbone_input)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    backbone = keras.Model(backbone_input, x, name="backbone")

    pixels = keras.Input((48, 48, 1), name="pixels")
    x = keras.Sequential([keras.layers.RandomFlip("horizontal")], name="augmentation")(pixels)
    x = keras.layers.Resizing(image_size, image_size, name="resize")(x)
    x = keras.layers.Concatenate(name="gray_to_rgb")([x, x, x])
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(x)
    x = backbone(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(8, activation="relu", name="head_dense")(x)
    x = keras.layers.Dropout(0.3, name="head_dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(pixels, outputs, name=f"tiny_cnn_{seed}")


def linear_contract_model():
    """A hand-set model whose Grad-CAM is known exactly.

    The backbone's only feature map is the mean of the three (identical) channels of the pixels
    scaled to 0..1. Class 0's logit is the mean of that map, class 1's is minus it. So the Grad-CAM
    of class 0 is the image divided by its maximum, and that of class 1 is all zeros.
    """
    import keras

    backbone_input = keras.Input((48, 48, 3), name="backbone_input")
    feature = keras.layers.Conv2D(1, 1, use_bias=False, name="feature")(backbone_input)
    backbone = keras.Model(backbone_input, feature, name="backbone")
    backbone.get_layer("feature").set_weights([np.full((1, 1, 3, 1), 1 / 3, np.float32)])

    pixels = keras.Input((48, 48, 1), name="pixels")
    x = keras.layers.Identity(name="augmentation")(pixels)
    x = keras.layers.Resizing(48, 48, name="resize")(x)
    x = keras.layers.Concatenate(name="gray_to_rgb")([x, x, x])
    x = keras.layers.Rescaling(1 / 255.0, name="preprocess")(x)
    x = backbone(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    head = keras.layers.Dense(1, activation="relu", name="head_dense")
    x = head(x)
    x = keras.layers.Dropout(0.5, name="head_dropout")(x)
    predictions = keras.layers.Dense(2, activation="softmax", name="predictions")
    outputs = predictions(x)
    model = keras.Model(pixels, outputs, name="linear")
    head.set_weights([np.ones((1, 1), np.float32), np.zeros(1, np.float32)])
    predictions.set_weights([np.array([[1.0, -1.0]], np.float32), np.zeros(2, np.float32)])
    return model
