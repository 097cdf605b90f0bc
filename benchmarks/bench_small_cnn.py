"""Benchmark 2: the CPU baseline. Train small_cnn with the real CLI, then score it on test/.

Runs exactly

    python -m fer_utils train --backbone small_cnn --data DATA --out RUN_DIR --max-minutes 20 [EXTRA...]

(training reads DATA/train only and carves its validation split from it), then loads the run
folder with plain Keras and computes the accuracy on DATA/test (FER2013's PublicTest in the
shared copy), plain and with flip test-time augmentation (`evaluate --tta`), plus the balanced
accuracy and macro-F1 that the default class weights are meant to raise. Prints the figures and
the machine's load, since other processes share the CPU.

    python benchmarks/bench_small_cnn.py [--data DATA] [--out RUN_DIR] [--max-minutes 20] [EXTRA TRAIN ARGS...]

DATA is an option, not a positional argument, so that the value of an extra option
(`--learning-rate 3e-3`) cannot be mistaken for it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "fer2013"


def sample_load(samples: list, stop: threading.Event, every_s: float = 30.0) -> None:
    """Append the 1-minute load average to `samples` every `every_s` seconds until `stop` is set."""
    while not stop.wait(every_s):
        samples.append(os.getloadavg()[0])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="FER2013 root (train/ and test/).")
    parser.add_argument("--out", default=str(REPO / "runs" / "bench_small_cnn"), help="Run folder to write.")
    parser.add_argument("--max-minutes", type=float, default=20.0, help="Training budget passed to the CLI.")
    # Anything else (e.g. --no-class-weights, --overwrite) is passed on to `train` unchanged.
    args, extra = parser.parse_known_args(argv)
    extra = [item for item in extra if item != "--"]

    command = [
        sys.executable, "-m", "fer_utils", "train", "--backbone", "small_cnn", "--data", args.data,
        "--out", args.out, "--max-minutes", str(args.max_minutes), *extra,
    ]
    print("Command:", " ".join(command))
    print(f"CPU cores: {os.cpu_count()}, load average before: {os.getloadavg()}", flush=True)
    samples, stop = [], threading.Event()
    sampler = threading.Thread(target=sample_load, args=(samples, stop), daemon=True)
    sampler.start()
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO)
    wall = time.perf_counter() - started
    stop.set()
    if completed.returncode != 0:
        print(f"train failed with status {completed.returncode}")
        return completed.returncode

    import keras

    from fer_utils import data, loading, metrics, models

    run = loading.load_model(args.out)
    test = data.load_labelled(args.data, split="test", progress=False)
    probabilities = models.predict(run.model, test.images, batch_size=512)
    scores = metrics.compute_metrics(test.labels, probabilities, class_names=test.class_names)
    accuracy = scores["accuracy"]
    # The same model with flip test-time augmentation, as `python -m fer_utils evaluate --tta` scores it.
    flip_probabilities = models.predict(run.model, test.images, batch_size=512, tta=True)
    tta_accuracy = metrics.compute_metrics(test.labels, flip_probabilities, class_names=test.class_names)["accuracy"]
    phase = run.config["phases"][0]
    print()
    print(f"small_cnn: {run.config['n_params']:,} parameters, keras {keras.__version__}")
    provenance = run.config["data"]
    print(f"train/val: {provenance['train_size']} / {provenance['val_size']} images ({provenance['validation']})")
    print(f"epochs run: {phase['epochs_run']} of {run.config['hyperparameters']['epochs']} planned "
          f"(best epoch {phase['best_epoch']})")
    print(f"training wall time: {sum(run.config['wall_time_s'].values()):.0f} s "
          f"(whole command incl. data loading and saving: {wall:.0f} s)")
    print(f"validation accuracy (carved from train): {run.val_metrics['accuracy']:.4f}")
    print(f"TEST accuracy on {test.source or 'test/'} ({len(test)} images): {accuracy:.4f}")
    print(f"TEST accuracy with flip TTA (each face and its mirror image averaged): {tta_accuracy:.4f}")
    # Mean recall over the classes: what the default balanced class weights are meant to raise.
    print(f"TEST balanced accuracy: {scores['balanced_accuracy']:.4f}, macro-F1: {scores['macro_f1']:.4f}")
    if samples:
        print(f"load average (1 min) during training: mean {np.mean(samples):.2f}, max {np.max(samples):.2f}, "
              f"{len(samples)} samples; after: {os.getloadavg()}")
    print("history:")
    print(run.history.to_string(index=False))
    summary = {"test_accuracy": accuracy, "test_accuracy_tta": tta_accuracy,
               "test_balanced_accuracy": scores["balanced_accuracy"], "test_macro_f1": scores["macro_f1"],
               "val_accuracy": run.val_metrics["accuracy"], "wall_s": wall,
               "training_s": sum(run.config["wall_time_s"].values()), "epochs_run": phase["epochs_run"],
               "load_mean": float(np.mean(samples)) if samples else None}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
