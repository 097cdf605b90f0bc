"""Benchmark 3: training and inference throughput (images/s) per backbone at 48 px on the CPU.

For each backbone (random weights; speed does not depend on their values) it times, after one
warm-up call:

- `train`: a training step of the phase that trains the backbone (top block unfrozen for the
  pretrained backbones, everything for small_cnn), with augmentation active;
- `frozen`: a training step with the backbone frozen (the seed-style head phase);
- `predict`: inference from raw pixels (what the cached path and evaluation pay per image).

Random 48x48 pixels are used: the figures measure compute, not accuracy. The 1-minute load
average is printed with each row, since other processes may share the CPU.

    python benchmarks/bench_throughput.py [--images 1536] [--batch-size 64] [--backbones vgg16,...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time


import numpy as np


def images_per_second(function, count: int) -> tuple[float, float]:
    """Run `function` once to warm up, then once timed; return (images/s, CPU-ms per image)."""
    function()
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return count / wall, 1000.0 * cpu / count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1536, help="Images per timed call.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backbones", default="small_cnn,vgg16,resnet50,efficientnetb0")
    args = parser.parse_args(argv)

    import keras

    from fer_utils import models, training

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, 48, 48, 1)).astype("uint8")
    labels = keras.utils.to_categorical(rng.integers(0, 7, args.images), 7)
    print(f"CPU cores: {os.cpu_count()}, {args.images} images per timed call, batch {args.batch_size}, 48 px")
    print(f"{'backbone':<16}{'params':>12}{'mode':>10}{'images/s':>10}{'cpu ms/img':>12}{'load':>7}")
    for name in args.backbones.split(","):
        spec = models.get_spec(name)
        model = models.build_model(name, img_size=48, weights=None)
        for label in ("train", "frozen") if spec.pretrained else ("train",):
            if label == "frozen":
                model.get_layer("backbone").trainable = False
            elif spec.pretrained:  # the fine-tuning phase: the top block unfrozen
                training.unfreeze_top(model.get_layer("backbone"), spec.finetune_prefixes)
            model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss="categorical_crossentropy")
            speed, cpu_ms = images_per_second(
                lambda: model.fit(images, labels, batch_size=args.batch_size, epochs=1, verbose=0), args.images
            )
            print(f"{name:<16}{model.count_params():>12,}{label:>10}{speed:>10.0f}{cpu_ms:>12.2f}"
                  f"{os.getloadavg()[0]:>7.2f}", flush=True)
        speed, cpu_ms = images_per_second(lambda: model.predict(images, batch_size=256, verbose=0), args.images)
        print(f"{name:<16}{model.count_params():>12,}{'predict':>10}{speed:>10.0f}{cpu_ms:>12.2f}"
              f"{os.getloadavg()[0]:>7.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
