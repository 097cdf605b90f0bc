"""Benchmark 7: training and inference speed (images/s) per Keras backend on this CPU, side by side.

For each backbone (small_cnn, VGG16, ResNet50 at 48 px, random weights, head BatchNorm and
augmentation on, as `fer_utils.models.build_model(..., weights=None, head_batchnorm=True)` builds
them) and each Keras backend (TensorFlow, JAX, PyTorch) it measures, on random pixels 0..255:

- `train`: `model.fit` with AdamW and cross-entropy at batch 64. A warm-up fit of 2 steps is
  excluded from the timing (it traces and compiles the training step); then a fit of `--steps`
  steps is timed. The warm-up fit's seconds are shown too (row `1st fit`), since compilation
  time differs a lot between backends.
- `infer`: `fer_utils.models.predict` (what evaluation, Grad-CAM and the demo call) on 512
  images at batch 256, timed after one warm-up call of the same size.

A Keras backend is fixed when keras is first imported, so every (backbone, backend) pair runs in
its own subprocess with `KERAS_BACKEND` set; that subprocess prints its figures as one JSON line.
The pairs run backbone by backbone, the backends in the same order for each, all with the same
sizes, so a slow spell of the machine does not fall on one backend only. A backend whose package
(or keras) is not importable by its Python is reported as "not installed". Each backend may be run
by another Python (a virtual environment that has its package, e.g. PyTorch kept out of the main
one): `--python-for torch=/path/to/venv/bin/python`; this checkout's `fer_utils` is put first on
its path either way.

The table shows images/s with the ratio to TensorFlow in parentheses, the machine's cores, each
backend's library versions and threads, and the 1-minute load average around each measurement,
since other processes may share the CPU: compare figures from one run only.

    python benchmarks/bench_backends.py [--backends tensorflow jax torch] [--backbones small_cnn vgg16 resnet50]
        [--steps N] [--python-for torch=PYTHON] [--quick]

`--quick` uses tiny sizes (batch 8, 2 timed steps, 16 images to infer): it checks that the
script works, its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ("tensorflow", "jax", "torch")
BACKBONES = ("small_cnn", "vgg16", "resnet50")
# Timed training steps per backbone: a few seconds of training each on 2 cores. Most of a run's
# time goes to imports and compilation (the `1st fit` row), not to these steps.
DEFAULT_STEPS = {"small_cnn": 24, "vgg16": 6, "resnet50": 6}
WARMUP_STEPS = 2
RESULT_PREFIX = "BENCH_BACKENDS_RESULT "
NOT_INSTALLED = "not installed"


# ---------------------------------------------------------------------------------------------
# The subprocess: one backbone on the backend given by KERAS_BACKEND.


def backend_versions(backend: str) -> dict:
    """Versions of keras, numpy and the backend's own packages, and the backend's thread count."""
    import keras
    import numpy as np

    versions = {"python": platform.python_version(), "keras": keras.__version__, "numpy": np.__version__}
    if backend == "tensorflow":
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
        versions["threads"] = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    elif backend == "jax":
        import jax
        import jaxlib

        versions["jax"] = jax.__version__
        versions["jaxlib"] = jaxlib.__version__
    elif backend == "torch":
        import torch

        versions["torch"] = torch.__version__
        versions["threads"] = torch.get_num_threads()
    return versions


def timed(function) -> float:
    """Wall-clock seconds of one call of `function`."""
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def measure_backbone(backbone: str, batch_size: int, steps: int, infer_images: int, infer_batch: int) -> dict:
    """Time training and inference of `backbone` on the current backend; return the figures as a dict."""
    import keras
    import numpy as np

    from fer_utils import models

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    # Whole batches only: a smaller last batch would be compiled again inside the timed fit.
    images = rng.integers(0, 256, (steps * batch_size, 48, 48, 1)).astype("float32")
    classes = len(models.CLASS_NAMES)
    labels = keras.utils.to_categorical(rng.integers(0, classes, len(images)), classes)
    model = models.build_model(backbone, weights=None, img_size=48, head_batchnorm=True, augment=True)
    model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss="categorical_crossentropy")
    warmup = min(WARMUP_STEPS, steps) * batch_size
    load_before = os.getloadavg()[0]
    first_fit_s = timed(lambda: model.fit(images[:warmup], labels[:warmup], batch_size=batch_size, epochs=1, verbose=0))
    train_s = timed(lambda: model.fit(images, labels, batch_size=batch_size, epochs=1, verbose=0))
    infer = np.resize(images, (infer_images, 48, 48, 1))
    models.predict(model, infer, batch_size=infer_batch)
    infer_s = timed(lambda: models.predict(model, infer, batch_size=infer_batch))
    return {
        "backbone": backbone, "params": model.count_params(),
        "train": len(images) / train_s, "infer": infer_images / infer_s, "first_fit_s": first_fit_s,
        "load": [load_before, os.getloadavg()[0]],
    }


def run_child(args) -> dict:
    """The subprocess's work: check the backend, then measure one backbone; never raises."""
    import importlib.util

    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    record = {"backend": backend, "backbone": args.child}
    missing = [name for name in ("keras", backend) if importlib.util.find_spec(name) is None]
    if missing:
        return {**record, "status": NOT_INSTALLED, "missing": missing}
    try:
        import keras

        if keras.backend.backend() != backend:
            raise RuntimeError(f"keras runs on {keras.backend.backend()}, not on KERAS_BACKEND={backend}")
        record["versions"] = backend_versions(backend)
        record.update(measure_backbone(args.child, args.batch_size, args.steps, args.infer_images, args.infer_batch))
        record["status"] = "ok"
    except Exception as error:  # reported in the table: one failing backend must not stop the others
        record.update(status="error", error=f"{type(error).__name__}: {error}")
    # CPU seconds of the whole subprocess (import and build included): far below twice the wall time
    # on 2 cores means other processes took the CPU.
    record["cpu_s"] = time.process_time()
    return record


# ---------------------------------------------------------------------------------------------
# The parent: one subprocess per (backbone, backend), then one table.


def parse_result(stdout: str) -> dict | None:
    """The JSON record of a subprocess's output: its last line starting with RESULT_PREFIX, else None."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    return None


def parse_python_for(items: list[str]) -> dict[str, str]:
    """Turn `BACKEND=PYTHON` items into a dict; ValueError for an unknown backend or a missing file."""
    pythons = {}
    for item in items:
        backend, separator, python = item.partition("=")
        if not separator or backend not in BACKENDS:
            raise ValueError(f"--python-for {item!r}: expected BACKEND=PYTHON with BACKEND one of {', '.join(BACKENDS)}.")
        if not Path(python).exists():
            raise ValueError(f"--python-for {item!r}: {python} does not exist. Give the path of a Python interpreter.")
        pythons[backend] = python
    return pythons


def run_pair(python: str, backend: str, backbone: str, sizes: dict, timeout_s: float) -> dict:
    """Measure `backbone` on `backend` in a subprocess of `python`; return its record (status "error" on failure)."""
    command = [python, str(Path(__file__).resolve()), "--child", backbone,
               *(f"--{key.replace('_', '-')}={value}" for key, value in sizes.items())]
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    record = {"backend": backend, "backbone": backbone}
    try:
        completed = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {**record, "status": "error", "error": f"timed out after {timeout_s:.0f} s"}
    result = parse_result(completed.stdout)
    if result is None:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or ["no output"]
        return {**record, "status": "error", "error": f"exit status {completed.returncode}: {tail[0]}"}
    return result


def figure(value: float) -> str:
    """`value` to about 3 significant digits: 1,256 / 75.3 / 0.42 (tiny --quick figures stay readable)."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def cell(record: dict, key: str, reference: dict | None) -> str:
    """One table cell: the figure, with its ratio to the reference record's (None: no ratio)."""
    if record["status"] == NOT_INSTALLED:
        return NOT_INSTALLED
    if record["status"] != "ok":
        return "error"
    text = figure(record[key])
    if reference is not None and reference is not record and reference.get("status") == "ok":
        text += f" ({record[key] / reference[key]:.2f}x)"
    return text


def format_report(records: list[dict], backends: list[str], backbones: list[str], description: str) -> str:
    """The side-by-side table of `records` (one per backbone and backend), with versions, errors and load."""
    by_pair = {(record["backbone"], record["backend"]): record for record in records}
    width = 22
    lines = [f"Machine: {os.cpu_count()} CPU cores, {platform.machine()}, {platform.system()} {platform.release()}",
             "Backends:"]
    for backend in backends:
        done = [by_pair[(name, backend)] for name in backbones if by_pair[(name, backend)].get("versions")]
        if done:
            versions = ", ".join(f"{key} {value}" for key, value in done[0]["versions"].items())
        else:
            versions = by_pair[(backbones[0], backend)]["status"]
        lines.append(f"  {backend:<12}{versions}")
    lines += ["", description,
              f"{'backbone':<12}{'mode':<8}" + "".join(f"{backend:>{width}}" for backend in backends)]
    for backbone in backbones:
        reference = by_pair.get((backbone, "tensorflow"))
        for key, label in (("train", "train"), ("infer", "infer"), ("first_fit_s", "1st fit")):
            # Seconds are not a speed: the ratio is shown for the images/s rows only.
            ratio_to = reference if key != "first_fit_s" else None
            row = [cell(by_pair[(backbone, backend)], key, ratio_to) for backend in backends]
            lines.append(f"{backbone:<12}{label:<8}" + "".join(f"{text:>{width}}" for text in row))
    loads = [value for record in records for value in record.get("load", [])]
    if loads:
        lines.append(f"load average (1 min) around the measurements: {min(loads):.2f} .. {max(loads):.2f}")
    for record in records:
        if record["status"] == "error":
            lines.append(f"error: {record['backbone']} on {record['backend']}: {record['error']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES),
                        help=f"Backbones of fer_utils.models (default: {' '.join(BACKBONES)}).")
    parser.add_argument("--steps", type=int, help="Timed training steps for every backbone (default: "
                        + ", ".join(f"{name} {steps}" for name, steps in DEFAULT_STEPS.items()) + ").")
    parser.add_argument("--batch-size", type=int, default=64, help="Training batch size.")
    parser.add_argument("--infer-images", type=int, default=512, help="Images per timed inference call.")
    parser.add_argument("--infer-batch", type=int, default=256, help="Batch size of inference.")
    parser.add_argument("--python-for", action="append", default=[], metavar="BACKEND=PYTHON",
                        help="Run BACKEND with this Python (repeatable); default: the one running this script.")
    parser.add_argument("--timeout", type=float, default=1200.0, help="Seconds allowed for one backbone on one backend.")
    parser.add_argument("--quick", action="store_true", help="Tiny sizes, to check that the script works.")
    parser.add_argument("--child", metavar="BACKBONE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(RESULT_PREFIX + json.dumps(run_child(args)), flush=True)
        return 0
    sys.path.insert(0, str(REPO))
    from fer_utils import models  # the registry only: keras is imported by the subprocesses

    try:
        pythons = parse_python_for(args.python_for)
        for backbone in args.backbones:
            models.get_spec(backbone)
    except ValueError as error:
        parser.error(str(error))
    if args.quick:
        args.batch_size, args.infer_images, args.infer_batch = 8, 16, 8
        args.steps = args.steps or 2

    description = (f"images/s at 48 px, random weights: train = model.fit at batch {args.batch_size}, "
                   f"{args.steps or ', '.join(f'{name} {steps}' for name, steps in DEFAULT_STEPS.items())} timed steps after {WARMUP_STEPS} warm-up steps; "
                   f"infer = fer_utils.models.predict, {args.infer_images} images at batch {args.infer_batch}; "
                   f"(0.50x) = ratio to tensorflow; 1st fit = seconds of the warm-up fit, compilation included")
    print(description.split(";")[0], flush=True)
    records, missing = [], set()
    for backbone in args.backbones:
        for backend in args.backends:
            if backend in missing:
                records.append({"backend": backend, "backbone": backbone, "status": NOT_INSTALLED})
                continue
            sizes = {"batch_size": args.batch_size, "steps": args.steps or DEFAULT_STEPS.get(backbone, 6),
                     "infer_images": args.infer_images, "infer_batch": args.infer_batch}
            started = time.perf_counter()
            record = run_pair(pythons.get(backend, sys.executable), backend, backbone, sizes, args.timeout)
            records.append(record)
            if record["status"] == NOT_INSTALLED:
                missing.add(backend)
            figures = f"train {figure(record['train'])}, infer {figure(record['infer'])} images/s" if record["status"] == "ok" \
                else record.get("error", record["status"])
            cpu = f", CPU {record['cpu_s']:.0f} s" if "cpu_s" in record else ""
            print(f"  {backbone} on {backend}: {figures} (wall {time.perf_counter() - started:.0f} s{cpu})", flush=True)
    print()
    print(format_report(records, args.backends, args.backbones, description))
    return 0


if __name__ == "__main__":
    sys.exit(main())
