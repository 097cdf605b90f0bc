"""The compact FER2013 model that ships inside the package (made by `tools/shipped_model/`): `load_pretrained()`.

`pretrained_model/` holds `model.json` (the `build_arguments` of one network or of each ensemble member, whose
probabilities are averaged; class order; measured figures), `weights.npz` and `MODEL_CARD.md`.
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
            raise FileNotFoundError(f"The shipped model file '{MODEL_DIR / name}' is missing, so this fer_utils "
                                    "install cannot predict without a run of your own. Reinstall fer_utils (pip "
                                    "install --force-reinstall fer-utils), or pass --model RUN_DIR.")
    return MODEL_DIR


def description() -> dict:
    """model.json of the shipped model: build arguments, class names, training and test figures."""
    return json.loads((model_dir() / DESCRIPTION_FILE).read_text(encoding="utf-8"))


def load_pretrained():
    """The shipped FER2013 model as a `keras.Model`: raw 48x48x1 pixels (0..255) in, probabilities out."""
    return _build(description())


def load_run():
    """The shipped model as a `runs.Run`, its config holding the keys run-folder readers look for."""
    from fer_utils.runs import Run

    info = description()
    config = {
        **info,
        "name": BUILTIN,
        "img_size": _member_arguments(info)[0]["img_size"],
        "data": info.get("data", {}),
        "wall_time_s": {"total": 60.0 * float(info.get("training", {}).get("minutes", 0.0))},
    }
    return Run(path=None, model=_build(info), config=config, history=None, class_names=tuple(info["class_names"]),
               val_metrics=dict(info.get("val_metrics", {})))


def _member_arguments(info: dict) -> list[dict]:
    """The `build_model` arguments of each network of the model model.json `info` describes."""
    if "members" in info:
        return [member["build_arguments"] for member in info["members"]]
    return [info["build_arguments"]]


def _build(info: dict):
    import keras

    from fer_utils import models
    from fer_utils.augmentation import AugmentationConfig

    networks = []
    for arguments in _member_arguments(info):
        arguments = dict(arguments)
        if isinstance(arguments.get("augmentation"), dict):
            arguments["augmentation"] = AugmentationConfig(**arguments["augmentation"])
        networks.append(models.build_model(weights=None, class_names=tuple(info["class_names"]), **arguments))
    if len(networks) == 1:
        model = networks[0]
    else:
        inputs = keras.Input(shape=networks[0].input_shape[1:], name="image")
        # Each member renamed, so the ensemble's layer names are unique; their layers are shared, not copied.
        outputs = [keras.Model(network.input, network.output, name=f"member_{index + 1}")(inputs)
                   for index, network in enumerate(networks)]
        model = keras.Model(inputs, keras.layers.Average(name="predictions")(outputs), name="builtin_ensemble")
    model.set_weights(read_weights(model_dir() / WEIGHTS_FILE, model))
    return model


def read_weights(path: Path, model) -> list[np.ndarray]:
    """The stored arrays, each cast to the dtype of the model variable it fills.

    `arr_<i>` in the model's variable order: float16, or int8 with a float32 per-channel `scale_<i>` (so two
    networks fit the package's 4 MiB).
    """
    with np.load(path, allow_pickle=False) as stored:
        count = sum(name.startswith("arr_") for name in stored.files)
        arrays = [
            stored[f"arr_{index}"].astype(np.float32) * stored[f"scale_{index}"]
            if f"scale_{index}" in stored.files else stored[f"arr_{index}"]
            for index in range(count)
        ]
    variables = model.weights
    if len(arrays) != len(variables):
        raise ValueError(f"'{path}' holds {len(arrays)} arrays but the model built from {DESCRIPTION_FILE} has "
                         f"{len(variables)} variables: the two files do not belong together. Reinstall fer_utils.")
    return [array.astype(variable.dtype) for array, variable in zip(arrays, variables)]
