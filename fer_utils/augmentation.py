"""The training-time augmentation pipeline, built from Keras's own random image layers.

The pipeline is the first block inside every model (see `fer_utils.models`): Keras random layers
are active only when the model runs in training mode (`fit`), and pass images through unchanged
in `predict` and `evaluate`. It works on raw FER pixels (48x48x1, values 0..255).

The defaults are mild on purpose: FER2013 faces are already roughly aligned and centred, so small
shifts, rotations and zooms plus a horizontal flip (expressions are close to left-right symmetric)
add variety without producing faces the test set never shows.
"""

from __future__ import annotations

import dataclasses

# Pixel range of raw FER images, used by the contrast layer to clip its output.
PIXEL_RANGE = (0.0, 255.0)


@dataclasses.dataclass(frozen=True)
class AugmentationConfig:
    """Strengths of each random transform; 0 (or False) switches a transform off.

    Attributes:
        flip: Random horizontal flip.
        rotation: Largest rotation as a fraction of a full turn (0.05 is +-18 degrees).
        zoom: Largest zoom in or out as a fraction of the image size.
        translation: Largest shift, horizontally and vertically, as a fraction of the image size.
        contrast: Largest contrast change as a fraction (0.1 scales contrast by 0.9 .. 1.1).
    """

    flip: bool = True
    rotation: float = 0.05
    zoom: float = 0.1
    translation: float = 0.1
    contrast: float = 0.1

    def to_dict(self) -> dict:
        """The fields as a plain dict (for config.json)."""
        return dataclasses.asdict(self)


def build_augmentation(config: AugmentationConfig | None = None, seed: int | None = None, name: str = "augmentation"):
    """Return a `keras.Sequential` of built-in random layers (identity at inference).

    Args:
        config: The transforms' strengths; `None` uses `AugmentationConfig()`'s defaults.
            Pass `AugmentationConfig(flip=False, rotation=0, zoom=0, translation=0, contrast=0)`
            (or use `augment=False` in `fer_utils.models.build_model`) for no augmentation.
        seed: Seed of the random layers, for reproducible runs.
        name: Name of the returned block (the model contract expects "augmentation").

    Returns:
        A `keras.Sequential` that maps (batch, H, W, C) images to images of the same shape. When
        every transform is off it holds a single `Identity` layer, so the model's structure (and
        its saved file) has the same layer names either way.
    """
    import keras

    config = config or AugmentationConfig()
    _check_fraction("rotation", config.rotation)
    _check_fraction("zoom", config.zoom)
    _check_fraction("translation", config.translation)
    _check_fraction("contrast", config.contrast)

    # Each random layer gets its own seed, derived from the one given, so two layers never draw
    # the same random numbers.
    def layer_seed(offset: int) -> int | None:
        return None if seed is None else int(seed) + offset

    layers = []
    if config.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=layer_seed(1), name="random_flip"))
    if config.rotation:
        layers.append(
            keras.layers.RandomRotation(config.rotation, fill_mode="reflect", seed=layer_seed(2), name="random_rotation")
        )
    if config.zoom:
        layers.append(keras.layers.RandomZoom(config.zoom, fill_mode="reflect", seed=layer_seed(3), name="random_zoom"))
    if config.translation:
        layers.append(
            keras.layers.RandomTranslation(
                config.translation, config.translation, fill_mode="reflect", seed=layer_seed(4), name="random_translation"
            )
        )
    if config.contrast:
        layers.append(
            keras.layers.RandomContrast(config.contrast, value_range=PIXEL_RANGE, seed=layer_seed(5), name="random_contrast")
        )
    if not layers:
        layers.append(keras.layers.Identity(name="no_augmentation"))
    return keras.Sequential(layers, name=name)


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(
            f"Augmentation strength '{name}' must be a fraction in [0, 1), got {value}. "
            "Use 0 to switch it off, or a small value such as 0.1."
        )


def single_transforms(config: AugmentationConfig | None = None) -> dict[str, AugmentationConfig]:
    """One config per active transform of `config`, with every other transform switched off.

    Used to preview each transform's strength on its own (notebook 02).
    """
    config = config or AugmentationConfig()
    off = dict(flip=False, rotation=0.0, zoom=0.0, translation=0.0, contrast=0.0)
    return {
        name: AugmentationConfig(**{**off, name: value})
        for name, value in config.to_dict().items()
        if value
    }


def augment_samples(images, config: AugmentationConfig | None = None, draws: int = 4, seed: int = 0):
    """Apply the training augmentation to `images` `draws` times; returns (draws, N, H, W, C) uint8.

    The layers run in training mode, exactly as inside `fit`, so this shows what the model sees.
    """
    import numpy as np

    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}.")
    pipeline = build_augmentation(config, seed=seed)
    batch = np.asarray(images, dtype="float32")
    outputs = [np.asarray(pipeline(batch, training=True)) for _ in range(draws)]
    return np.clip(np.rint(np.stack(outputs)), 0, 255).astype("uint8")
