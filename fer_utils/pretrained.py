"""The compact FER2013 model that ships inside the package: `load_pretrained()`.

The package holds it as two small files in `fer_utils/pretrained_model/`: `model.json` (how to build
the network with `fer_utils.models.build_model`, its class order and measured figures) and
`weights.npz` (the weights in float16, which halves the file; they are cast back to float32 on
load). `MODEL_CARD.md` beside them says how it was trained and what it is (and is not) good for.
`tools/package_pretrained.py` writes all three from a run folder.

    import fer_utils
    model = fer_utils.load_pretrained()          # a keras.Model: raw 48x48 gray faces -> 7 probabilities
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

BUILTIN = "builtin"
MODEL_DIR = Path(__file__).resolve().parent / "pretrained_model"
DESCRIPTION_FILE = "model.json"
WEIGHTS_FILE = "weights.npz"
MODEL_CARD_FILE = "MODEL_CARD.md"


def model_dir() -> Path:
    """The folder of the shipped model; FileNotFoundError (with the fix) when the install lacks it."""
    for name in (DESCRIPTION_FILE, WEIGHTS_FILE):
        if not (MODEL_DIR / name).is_file():
            raise FileNotFoundError(
                f"The shipped model file '{MODEL_DIR / name}' is missing, so this fer_utils install cannot "
                "predict without a run of your own. Reinstall fer_utils (pip install --force-reinstall "
                "fer-utils), or pass --model RUN_DIR."
            )
    return MODEL_DIR


def description() -> dict:
    """model.json of the shipped model: build arguments, class names, training and test figures."""
    return json.loads((model_dir() / DESCRIPTION_FILE).read_text(encoding="utf-8"))


def load_pretrained():
    """The shipped FER2013 model as a `keras.Model` (raw 48x48x1 pixels 0..255 in, 7 probabilities out).

    Its outputs follow `fer_utils.CLASS_NAMES`; `fer_utils.faces.predict_faces(image, model)` and
    `fer_utils.evaluation.evaluate_model(model, split)` take it as it is.
    """
    return _build(description())


def load_run():
    """The shipped model as a `fer_utils.runs.Run` (path None; its config is model.json).

    model.json gains the keys a run folder's config.json has (input size, data provenance, training
    time), so jobs that check runs against one another (e.g. `fer_utils.averaging`) check it too.
    """
    from fer_utils.runs import Run

    info = description()
    config = {
        **info,
        "name": BUILTIN,
        "img_size": info["build_arguments"]["img_size"],
        "data": info.get("data", {}),
        "wall_time_s": {"total": 60.0 * float(info.get("training", {}).get("minutes", 0.0))},
    }
    return Run(
        path=None,
        model=_build(info),
        config=config,
        history=None,
        class_names=tuple(info["class_names"]),
        val_metrics=dict(info.get("val_metrics", {})),
    )


def _build(info: dict):
    from fer_utils import models
    from fer_utils.augmentation import AugmentationConfig

    arguments = dict(info["build_arguments"])
    if isinstance(arguments.get("augmentation"), dict):
        arguments["augmentation"] = AugmentationConfig(**arguments["augmentation"])
    model = models.build_model(weights=None, class_names=tuple(info["class_names"]), **arguments)
    model.set_weights(read_weights(model_dir() / WEIGHTS_FILE, model))
    return model


def read_weights(path: Path, model) -> list[np.ndarray]:
    """The stored arrays, each cast to the dtype of the model variable it fills."""
    with np.load(path, allow_pickle=False) as stored:
        arrays = [stored[f"arr_{index}"] for index in range(len(stored.files))]
    variables = model.weights
    if len(arrays) != len(variables):
        raise ValueError(
            f"'{path}' holds {len(arrays)} arrays but the model built from {DESCRIPTION_FILE} has "
            f"{len(variables)} variables: the two files do not belong together. Reinstall fer_utils."
        )
    return [array.astype(variable.dtype) for array, variable in zip(arrays, variables)]


def write_weights(path: Path, model) -> None:
    """Save `model`'s weights with float32 arrays stored as float16 (other dtypes as they are)."""
    arrays = [weight.astype(np.float16) if weight.dtype == np.float32 else weight for weight in model.get_weights()]
    np.savez_compressed(path, *arrays)
