"""The training-time augmentation block, built from Keras's own random image layers.

It is the first block inside every model (`fer_utils.models.input_block`) and acts only in `fit`.
The defaults are mild: FER2013 faces are roughly aligned and expressions nearly left-right symmetric.
"""

from __future__ import annotations

import dataclasses


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
    if config.rotation:
        layers.append(keras.layers.RandomRotation(config.rotation, fill_mode="reflect", seed=layer_seed(2),
                                                  name="random_rotation"))
    if config.zoom:
        layers.append(keras.layers.RandomZoom(config.zoom, fill_mode="reflect", seed=layer_seed(3), name="random_zoom"))
    if config.translation:
        layers.append(keras.layers.RandomTranslation(config.translation, config.translation, fill_mode="reflect",
                                                     seed=layer_seed(4), name="random_translation"))
    if config.contrast:
        layers.append(keras.layers.RandomContrast(config.contrast, value_range=(0.0, 255.0), seed=layer_seed(5),
                                                  name="random_contrast"))
    return keras.Sequential(layers or [keras.layers.Identity(name="no_augmentation")], name="augmentation")


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
