"""Benchmark 1: the frozen (head) phase, cached-feature path vs seed-style path, side by side.

VGG16 at 48 px with random weights (`weights=None`: throughput does not depend on the weights),
10 head epochs, on a fixed stratified subset of FER2013's train split (default 2,000 train +
500 validation images; the seed-style path on the full 28k images would take about an hour per
run on a 2-core CPU). Both paths go through `fer_utils.recipe.train` (the steps of notebooks 03/04)
with the same settings except `head_mode`, so the figures include everything a user waits for: the
cached path's feature extraction (`training.backbone_features`, timed here) as well as its epochs.

    python benchmarks/bench_frozen_phase.py [DATA] [--train 2000] [--val 500] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "fer2013"


def stratified_subset(split, size: int, seed: int):
    """A class-stratified random subset of `size` images (the same for a given seed)."""
    rng = np.random.default_rng(seed)
    fraction = size / len(split)
    chosen = []
    for label in range(len(split.class_names)):
        members = np.flatnonzero(split.labels == label)
        chosen.append(rng.permutation(members)[: max(1, round(fraction * len(members)))])
    return split.subset(np.sort(np.concatenate(chosen))[:size])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", default=str(DEFAULT_DATA), help="FER2013 root (train/ and test/).")
    parser.add_argument("--train", type=int, default=2000, help="Training images in the subset.")
    parser.add_argument("--val", type=int, default=500, help="Validation images (carved from train).")
    parser.add_argument("--epochs", type=int, default=10, help="Head epochs.")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)

    from fer_utils import data, recipe, training

    full_train = data.load_dataset(args.data, progress=False)["train"]
    train_pool, val_pool = data.train_val_split(full_train, val_fraction=0.1, seed=42)
    train = stratified_subset(train_pool, args.train, seed=0)
    val = stratified_subset(val_pool, args.val, seed=1)
    print(f"Data: {args.data}: subset of {len(train)} train + {len(val)} val images (stratified, seeds 0/1)")
    print(f"CPU cores: {os.cpu_count()}, load average before: {os.getloadavg()}")

    extraction = []
    compute_features = training.backbone_features

    def timed_features(*arguments, **keywords):
        started = time.perf_counter()
        features = compute_features(*arguments, **keywords)
        extraction.append(time.perf_counter() - started)
        return features

    training.backbone_features = timed_features
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for mode in ("cached", "images"):
            extraction.clear()
            settings = recipe.default_settings(
                "vgg16", weights=None, img_size=48, epochs_head=args.epochs, epochs_finetune=0,
                head_mode=mode, batch_size=args.batch_size, patience=0, seed=0,
            )
            started = time.perf_counter()
            run_dir = recipe.train((train, val), settings, Path(scratch) / mode, progress=False)
            total = time.perf_counter() - started
            run_config = json.loads((run_dir / "config.json").read_text())
            results[mode] = {
                "phase_s": run_config["wall_time_s"]["head"] + sum(extraction),
                "total_s": total,
                "extraction_s": sum(extraction),
                "val_accuracy": json.loads((run_dir / "val_metrics.json").read_text())["accuracy"],
            }
            print(f"[{mode}] head phase {results[mode]['phase_s']:.1f} s (call {total:.1f} s), "
                  f"load average now {os.getloadavg()[0]:.2f}", flush=True)

    cached, images = results["cached"], results["images"]
    print()
    print(f"VGG16, 48 px, weights=None, {args.epochs} head epochs, {len(train)} train + {len(val)} val images")
    print(f"{'path':<28}{'head phase (s)':>16}{'whole call (s)':>16}{'val acc':>10}")
    print(f"{'cached features (fast)':<28}{cached['phase_s']:>16.1f}{cached['total_s']:>16.1f}{cached['val_accuracy']:>10.3f}")
    print(f"{'  of which feature extraction':<28}{cached['extraction_s']:>16.1f}")
    print(f"{'seed-style (images)':<28}{images['phase_s']:>16.1f}{images['total_s']:>16.1f}{images['val_accuracy']:>10.3f}")
    print(f"Speed-up of the cached path: {images['phase_s'] / cached['phase_s']:.1f}x (head phase), "
          f"{images['total_s'] / cached['total_s']:.1f}x (whole call incl. model building and saving)")
    print(f"Load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
