"""Benchmark 4: inference speed (images/s) on the CPU of the Keras model and of its exports, side by side.

Exports the model to every format whose converter and runtime are installed (the `export`
extra), loads each export with its own runtime (`fer_utils.export.load_exported`: ONNX Runtime,
the LiteRT interpreter, TFSMLayer for the SavedModel) and times, on the same batch of demo faces
for every batch size, one warm-up call and then `--repeats` timed calls; a row shows the median as
images/s. Keras is timed with `predict_on_batch` (one compiled call per batch, as in a serving
loop). The largest difference of each export's probabilities from Keras's is printed too, and
the 1-minute load average, since other processes may share the CPU.

    python benchmarks/bench_export.py [--model RUN_DIR_OR_.keras] [--batch-sizes 1,64] [--repeats 7]

Without --model, a randomly initialised small_cnn is used: speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

FILE_NAMES = {"onnx": "model.onnx", "litert": "model.tflite", "saved_model": "saved_model"}


def median_seconds(function, batch, repeats: int) -> float:
    """Call `function(batch)` once to warm up, then `repeats` times; return the median wall time of one call."""
    function(batch)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function(batch)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def load_benchmark_model(source: str | None):
    """The model to time: `source` through `fer_utils.loading.load_model`, else a random small_cnn."""
    from fer_utils import models
    from fer_utils.loading import load_model

    if source:
        run = load_model(source)
        return run.model, run.name
    return models.build_model("small_cnn", weights=None, seed=0), "small_cnn (random weights)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="Run folder or .keras file (default: a random small_cnn).")
    parser.add_argument("--batch-sizes", default="1,64", help="Comma-separated batch sizes (default 1,64).")
    parser.add_argument("--repeats", type=int, default=7, help="Timed calls per row after the warm-up (default 7).")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="CPU threads of ONNX Runtime and LiteRT (default: all cores, as TensorFlow uses).")
    parser.add_argument("--out", help="Folder for the exports (default: a temporary folder, removed after).")
    args = parser.parse_args(argv)
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]

    from fer_utils import backend

    backend.quiet_tensorflow()
    from fer_utils import demo, export

    model, name = load_benchmark_model(args.model)
    faces = demo.draw_faces(max(batch_sizes), seed=0)
    runners = {"keras": lambda batch: model.predict_on_batch(batch)}
    notes = {"keras": "predict_on_batch"}
    with tempfile.TemporaryDirectory(prefix="bench_export_") as scratch:
        folder = Path(args.out or scratch)
        for format in export.FORMATS:
            try:
                export.require_packages(format, "export")
                export.require_packages(format, "run")
            except ValueError as missing:
                print(f"skipped {format}: {missing}")
                continue
            started = time.perf_counter()
            path = export.export_model(model, folder / FILE_NAMES[format], format, overwrite=True)
            runners[format] = export.load_exported(path, format, threads=args.threads)
            difference = export.max_difference(model, runners[format], faces)
            notes[format] = f"export {time.perf_counter() - started:.0f} s, max |p - p_keras| {difference:.1e}"

        print(f"Model: {name}, {model.count_params():,} parameters, input (batch, 48, 48, 1) float32")
        print(f"CPU cores: {os.cpu_count()}, runtime threads: {args.threads}, "
              f"median of {args.repeats} calls after a warm-up, the same demo faces for every runtime")
        header = "".join(f"{f'batch {size} img/s':>16}" for size in batch_sizes)
        print(f"{'runtime':<13}{header}{'load':>7}  notes")
        for runtime, function in runners.items():
            speeds = [size / median_seconds(function, faces[:size], args.repeats) for size in batch_sizes]
            cells = "".join(f"{speed:>16.0f}" for speed in speeds)
            print(f"{runtime:<13}{cells}{os.getloadavg()[0]:>7.2f}  {notes[runtime]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
