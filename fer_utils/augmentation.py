"""The training-time augmentation block, built from Keras's own random image layers.

It is the first block inside every model (`fer_utils.models.input_block`) and acts only in `fit`.
The defaults are mild: FER2013 faces are roughly aligned and expressions nearly left-right symmetric.
"""

from __future__ import annotations

import dataclasses
import functools


@dataclasses.dataclass(frozen=True)
class AugmentationConfig:
    """Strengths of each random transform (0 or False: off): `rotation` in turns (0.05 is +-18 degrees), `zoom`
    and `translation` in fractions of the image size, `contrast` 0.1 scales contrast by 0.9 .. 1.1."""

    flip: bool = True
    rotation: float = 0.05
    zoom: float = 0.1
    translation: float = 0.1
    contrast: float = 0.1

    def to_dict(self) -> dict:
        """The fields as a plain dict (for config.json)."""
        return dataclasses.asdict(self)


def build_augmentation(config: AugmentationConfig | None = None, seed: int | None = None):
    """A `keras.Sequential` named "augmentation" of Keras's random layers for raw 0..255 faces.

    `config` None uses the defaults; `seed` makes the draws reproducible (each layer gets its own).
    With every transform off it holds one `Identity` layer, so the model's structure is the same
    either way. A strength outside [0, 1) is a ValueError naming it.
    """
    import keras

    config = config or AugmentationConfig()
    for name in ("rotation", "zoom", "translation", "contrast"):
        value = getattr(config, name)
        if not 0.0 <= float(value) < 1.0:
            raise ValueError(f"Augmentation strength '{name}' must be a fraction in [0, 1), got {value}. "
                             "Use 0 to switch it off, or a small value such as 0.1.")

    def layer_seed(offset: int) -> int | None:
        return None if seed is None else int(seed) + offset  # two layers never draw the same numbers

    layers = []
    if config.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=layer_seed(1), name="random_flip"))
    if config.rotation or config.zoom or config.translation:
        layers.append(random_affine_class()(config.rotation, config.zoom, config.translation, seed=layer_seed(2),
                                            name="random_affine"))
    if config.contrast:
        layers.append(keras.layers.RandomContrast(config.contrast, value_range=(0.0, 255.0), seed=layer_seed(5),
                                                  name="random_contrast"))
    return keras.Sequential(layers or [keras.layers.Identity(name="no_augmentation")], name="augmentation")


@functools.cache
def random_affine_class():
    """The `RandomAffine` layer class, defined (and registered for loading) on first use, so importing this
    module does not import Keras. `loading.load_model` calls it before loading a saved model."""
    import math

    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="fer_utils")
    class RandomAffine(keras.layers.Layer):
        """Random rotation (in turns), zoom and shift (fractions of the size) composed into one affine
        transform per image and applied in ONE bilinear resampling, edges reflected.

        Custom because Keras's RandomRotation, RandomZoom and RandomTranslation resample one after the
        other: three interpolations in a row visibly blur a 48-px face, so training would see softer faces
        than evaluation. Identity outside training.
        """

        def __init__(self, rotation=0.0, zoom=0.0, translation=0.0, seed=None, **kwargs):
            super().__init__(**kwargs)
            self.rotation, self.zoom, self.translation, self.seed = rotation, zoom, translation, seed
            self.seed_generator = keras.random.SeedGenerator(seed)
            self.supports_jit = False  # as the Keras layers it replaces (TensorFlow's transform op lacks XLA)

        def call(self, images, training=False):
            if not training:
                return images
            height, width = images.shape[1], images.shape[2]
            size = (ops.shape(images)[0],)

            def draw(limit):
                return keras.random.uniform(size, -limit, limit, seed=self.seed_generator)

            angle, scale = draw(self.rotation) * 2.0 * math.pi, 1.0 + draw(self.zoom)
            shift_x, shift_y = draw(self.translation) * width, draw(self.translation) * height
            cos, sin = ops.cos(angle) * scale, ops.sin(angle) * scale
            center_x, center_y = (width - 1) / 2.0, (height - 1) / 2.0
            # Maps each output pixel to the input point it samples: rotate and scale about the centre, then shift.
            transform = ops.stack([cos, -sin, center_x - cos * center_x + sin * center_y + shift_x,
                                   sin, cos, center_y - sin * center_x - cos * center_y + shift_y,
                                   ops.zeros(size), ops.zeros(size)], axis=1)
            return ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="reflect")

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            return {**super().get_config(), "rotation": self.rotation, "zoom": self.zoom,
                    "translation": self.translation, "seed": self.seed}

    return RandomAffine


def single_transforms(config: AugmentationConfig | None = None) -> dict[str, AugmentationConfig]:
    """One config per active transform of `config`, every other one off (notebook 02 previews each)."""
    off = dict(flip=False, rotation=0.0, zoom=0.0, translation=0.0, contrast=0.0)
    return {name: AugmentationConfig(**{**off, name: value})
            for name, value in (config or AugmentationConfig()).to_dict().items() if value}


def augment_samples(images, config: AugmentationConfig | None = None, draws: int = 4, seed: int = 0):
    """`draws` augmented copies of `images` in training mode, as inside `fit`: (draws, N, H, W, C) uint8."""
    import numpy as np

    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}.")
    pipeline = build_augmentation(config, seed=seed)
    batch = np.asarray(images, dtype="float32")
    outputs = [np.asarray(pipeline(batch, training=True)) for _ in range(draws)]
    return np.clip(np.rint(np.stack(outputs)), 0, 255).astype("uint8")
