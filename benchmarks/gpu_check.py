"""The GPU check: VGG16 and ResNet50 at 96 px on one GPU, float32 against mixed precision, under JAX.

For each backbone (random weights: ImageNet's cannot be downloaded on the GPU machine) and each
setting,

- `float32`: float32 throughout, compiled the backend's default way (`jit_compile="auto"`,
  which under JAX is XLA; JAX has no other compiled path, so the ratio below measures precision);
- `mixed`: the `mixed_bfloat16` policy (`--mixed-policy mixed_float16` for float16 with loss
  scaling), compiled with XLA (`jit_compile=True`),

it builds the project's model (`fer_utils.models.build_model`, head BatchNorm on, augmentation
on, as a random-weight training run has it), compiles it with AdamW and label-smoothed
cross-entropy as `fer_utils.training` does, trains a few warm-up steps (which include the XLA
compilation, timed separately) and then a fixed number of timed steps on a stratified FER2013
subset, and checks that

- the training loss falls (mean of the last steps below the mean of the first) and the weights moved;
- the model's output, the softmax, is float32 under the mixed policy too, while the backbone
  really computes in the mixed policy's low precision;
- once, on the first backbone's mixed model: Grad-CAM (`fer_utils.gradcam.gradcam_heatmaps`) gives
  finite heatmaps in [0, 1], and flip TTA (`fer_utils.models.predict(tta=True)`) gives
  probabilities that sum to 1 and equal the mean of the plain and mirrored predictions. Both run
  eagerly (operation by operation), which on a GPU costs a compilation per operation, so once.

It prints images/s per setting, the ratio mixed / float32, the peak GPU memory (JAX's allocator
statistics, so "n/a" on a CPU), and the seconds one full FER2013 training epoch (28,709 images)
would take at that speed. Each setting runs in its own process, so each peak is that setting's
own. The last line is "GPU check passed", or the failures with exit status 1. Under XLA's default
precision, float32 matrix products and convolutions may run as TF32 on Ampere and later GPUs, so
the ratio is against that.

    python benchmarks/gpu_check.py [--subset data/gpu_check/fer2013_subset.npz] [--steps 60]
        [--batch-size 128] [--img-size 96] [--mixed-policy mixed_bfloat16|mixed_float16]
    python benchmarks/gpu_check.py --make-subset PATH/TO/fer2013 [--subset-size 2048]
    python benchmarks/gpu_check.py --dry-run        # tiny sizes on a CPU, on the demo data (CI)

`KERAS_BACKEND` defaults to `jax` here (set it to run under another backend); TensorFlow is kept
out of the process under JAX (the GPU machine has none), so a hidden dependency on it fails here
too (`--allow-tensorflow` lifts that).

`--dry-run` runs the same code at the smallest input the backbones accept (32 px), batch 8 and
1 warm-up + 3 timed steps, on a 16-image stratified subset of the drawn demo data
(`fer_utils.demo`), every setting in one process (a CPU has no device memory to keep apart). A
few steps of 8 images from random weights need not lower the loss (in a 10-step dry run ResNet50's
rose), so there the loss is reported and checked to be finite, and the weights to have moved, but
its fall is not asserted;
the precision policies, XLA, the float32 output, Grad-CAM and TTA are checked as in the real run.

The check's models are built without the project's random augmentation layers: the one-resampling
RandomAffine is marked, like Keras's RandomRotation it replaces, not XLA-compilable (`supports_jit=False`),
and a model holding one is never compiled, whatever `compile` asks for; under JAX it then trains
operation by operation, hundreds of times slower. The check prints a note saying so;
`--augment` puts the layers in, and the mixed setting then fails for want of XLA.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SUBSET = REPO / "data" / "gpu_check" / "fer2013_subset.npz"
DEFAULT_BACKEND = "jax"
BACKBONES = ("vgg16", "resnet50")
SETTINGS = ("float32", "mixed")
MIXED_POLICIES = ("mixed_bfloat16", "mixed_float16")
# FER2013's training set (the csv's "Training" rows, Kaggle's train/ folder).
FER2013_TRAIN_IMAGES = 28_709
# What the issue allows the whole check on the GPU machine, start-up included.
TIME_BUDGET_S = 480.0
RESULT_PREFIX = "GPU_CHECK_RESULT "
# Dry-run sizes: the smallest input VGG16 and ResNet50 accept, a tiny batch, a few steps.
DRY_RUN = {"img_size": 32, "batch_size": 8, "steps": 3, "warmup_steps": 1, "subset_size": 16}
# Grad-CAM, TTA and the dtype probe run eagerly on one batch of this many images each: one batch
# shape, so the operations compiled for one serve the others.
EAGER_IMAGES = 8
# TTA's average must equal the mean of the plain and mirrored predictions up to rounding; batches
# of other sizes may pick other kernels, so low-precision models get a looser bound.
TTA_TOLERANCE = {"float32": 1e-4, "bfloat16": 2e-2, "float16": 5e-3}


# ---------------------------------------------------------------------------------------------
# The FER2013 subset
# ---------------------------------------------------------------------------------------------
def stratified_indices(labels, count: int, seed: int = 0) -> np.ndarray:
    """`count` row indices of `labels`, each class in proportion to its size (every class at least once).

    Class shares are rounded by largest remainder, so the counts add up to `count` exactly; the
    rows of each class are drawn without replacement by a generator seeded with `seed`, and the
    result is sorted.
    """
    labels = np.asarray(labels)
    classes, sizes = np.unique(labels, return_counts=True)
    if count < len(classes):
        raise ValueError(f"A stratified subset of {count} images cannot hold all {len(classes)} classes; ask for more.")
    if count > len(labels):
        raise ValueError(f"Asked for {count} images but the split holds only {len(labels)}.")
    shares = sizes / sizes.sum() * count
    taken = np.maximum(np.floor(shares).astype(int), 1)
    # Largest remainders first; a class never gets more rows than it has.
    for index in np.argsort(-(shares - np.floor(shares)), kind="stable"):
        if taken.sum() >= count:
            break
        if taken[index] < sizes[index]:
            taken[index] += 1
    while taken.sum() > count:  # the at-least-one rule overshot: trim the largest classes
        taken[np.argmax(taken)] -= 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == label), size=n, replace=False) for label, n in zip(classes, taken)]
    return np.sort(np.concatenate(chosen))


def write_subset(dataset, out_path, count: int = 2048, seed: int = 0, split: str = "train") -> Path:
    """Write a stratified subset of `dataset`'s `split` as a compressed `.npz` and return its path.

    `dataset` is anything `fer_utils.data.load_dataset` reads (a FER2013 root, fer2013.csv, the
    demo data). The file holds `images` (N, 48, 48, 1) uint8, `labels` (N,) int64 and
    `class_names` (K,) str.
    """
    from fer_utils import data, files

    splits = data.load_dataset(dataset, progress=False)
    if split not in splits:
        raise ValueError(f"'{dataset}' has no {split} split (found {sorted(splits)}); point to the FER2013 root.")
    source = splits[split]
    indices = stratified_indices(source.labels, count, seed=seed)
    out_path = Path(out_path)

    def write(stream) -> None:
        np.savez_compressed(
            stream, images=source.images[indices], labels=source.labels[indices].astype(np.int64),
            class_names=np.asarray(source.class_names, dtype=str),
        )

    return files.atomic_write(out_path, write)


def read_subset(path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(images uint8 (N, 48, 48, 1), labels int64 (N,), class names) from a file `write_subset` wrote."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No FER2013 subset at '{path}'. {make_subset_hint(path)}")
    with np.load(path) as stored:
        missing = {"images", "labels", "class_names"} - set(stored.files)
        if missing:
            raise ValueError(f"'{path}' lacks {sorted(missing)}; recreate it. {make_subset_hint(path)}")
        images, labels, class_names = stored["images"], stored["labels"], tuple(str(n) for n in stored["class_names"])
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (48, 48, 1) or labels.shape != images.shape[:1]:
        raise ValueError(
            f"'{path}' holds images {images.dtype} {images.shape} and labels {labels.shape}; expected uint8 "
            f"(N, 48, 48, 1) and (N,). {make_subset_hint(path)}"
        )
    return images, labels.astype(np.int64), class_names


def make_subset_hint(path) -> str:
    """The one line that says how to create the subset file at `path`."""
    target = "" if Path(path).resolve() == DEFAULT_SUBSET.resolve() else f" --subset {path}"
    return f"Create it with: python benchmarks/gpu_check.py --make-subset PATH/TO/fer2013{target}"


def dry_run_subset(folder: Path, count: int, seed: int = 0) -> Path:
    """Draw a small demo dataset (`fer_utils.demo`) into `folder` and write its stratified subset there."""
    from fer_utils.demo import MIN_PER_CLASS, make_demo_dataset

    root = make_demo_dataset(folder / "demo", per_class=MIN_PER_CLASS, seed=seed)
    return write_subset(root, folder / "demo_subset.npz", count=count, seed=seed)


# ---------------------------------------------------------------------------------------------
# One setting (runs in a child process)
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Job:
    """One backbone in one setting, and the sizes it runs with."""

    backbone: str
    setting: str  # "float32" or "mixed"
    subset: str
    img_size: int
    batch_size: int
    steps: int
    warmup_steps: int
    mixed_policy: str = "mixed_bfloat16"
    seed: int = 0
    extras: bool = False  # Grad-CAM and TTA after training
    augment: bool = False  # the project's random augmentation layers in the model
    assert_loss_falls: bool = True  # False in a dry run: a few tiny steps need not lower the loss

    @property
    def policy(self) -> str:
        return self.mixed_policy if self.setting == "mixed" else "float32"


def per_step_losses(running_means) -> np.ndarray:
    """Each step's own loss from Keras's per-step logs, which hold the epoch's running mean.

    After step k (1-based) the log holds m_k = (l_1 + ... + l_k) / k, so l_k = k m_k - (k-1) m_(k-1).
    """
    means = np.asarray(running_means, dtype=np.float64)
    steps = np.arange(1, len(means) + 1)
    totals = steps * means
    return np.diff(totals, prepend=0.0)


def loss_falls(losses, window: int | None = None) -> tuple[bool, float, float]:
    """(mean of the last `window` losses < mean of the first, first mean, last mean).

    The default window is a quarter of the steps, at most 10: wide enough to average out single
    batches, narrow enough that the two windows do not overlap.
    """
    losses = np.asarray(losses, dtype=np.float64)
    if len(losses) < 2:
        raise ValueError(f"Need at least 2 losses to tell whether the loss falls; got {len(losses)}.")
    window = window or max(1, min(10, len(losses) // 4))
    first, last = float(losses[:window].mean()), float(losses[-window:].mean())
    return bool(np.isfinite(first) and np.isfinite(last) and last < first), first, last


def peak_memory_bytes() -> int | None:
    """The peak memory the backend's allocator has held on the first accelerator, or None (CPU, unknown)."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            stats = jax.devices()[0].memory_stats()
            return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None
        if backend == "torch":
            import torch

            return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None
        if backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
    except (RuntimeError, ValueError, KeyError):
        return None
    return None


def device_description() -> str:
    """The device the backend computes on, e.g. "cuda:0 NVIDIA H200" or "cpu"."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform}:{device.id} {getattr(device, 'device_kind', '')}".strip()
    if backend == "torch":
        import torch

        return f"cuda:0 {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "cpu"
    return backend


def _step_recorder():
    import keras

    class StepRecorder(keras.callbacks.Callback):
        """Records when each training step finished and its logged loss (the epoch's running mean).

        `async_safe`: Keras then calls it from a worker thread, where turning the step's loss into a
        number waits for that step to finish while the training loop goes on dispatching the next
        ones. So the loop never waits between steps, and each time stamp is the moment a step's
        result was ready.
        """

        async_safe = True

        def __init__(self):
            super().__init__()
            self.steps = {}

        def on_train_batch_end(self, batch, logs=None):
            loss = float(keras.ops.convert_to_numpy(logs["loss"]))
            self.steps[batch] = (time.perf_counter(), loss)

        def times_and_means(self) -> tuple[list[float], list[float]]:
            ordered = [self.steps[batch] for batch in sorted(self.steps)]
            return [time_ for time_, _ in ordered], [loss for _, loss in ordered]

    return StepRecorder()


def steady_images_per_second(finish_times, batch_size: int) -> float:
    """Images/s between the first and the last step's finish: the steps after the first, at full pace.

    This leaves out what `fit` spends before its first step (setting up, moving the state) and
    after its last, which a longer training run pays once.
    """
    if len(finish_times) < 2:
        raise ValueError(f"Need at least 2 timed steps to measure a pace; got {len(finish_times)}.")
    elapsed = finish_times[-1] - finish_times[0]
    return (len(finish_times) - 1) * batch_size / elapsed if elapsed > 0 else float("inf")


def augmentation_without_xla() -> list[str]:
    """The project's default augmentation layers that Keras will not compile with XLA (`supports_jit`).

    A model holding one is run without `jit_compile` whatever `compile` asks for; under JAX that
    means operation by operation.
    """
    from fer_utils.augmentation import build_augmentation

    return [layer.name for layer in build_augmentation().layers if not layer.supports_jit]


def build_and_compile(job: Job, num_classes: int, class_names):
    """The model of `job` under its precision policy, compiled; the global policy is restored after."""
    import keras

    from fer_utils.models import build_model

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(job.policy)
    try:
        model = build_model(
            job.backbone, num_classes=num_classes, img_size=job.img_size, weights=None, head_batchnorm=True,
            seed=job.seed, class_names=class_names, augment=job.augment,
        )
        # As fer_utils.training compiles: AdamW (biases and BatchNorm not decayed), label smoothing 0.1.
        optimizer = keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=1e-4)
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
            jit_compile=True if job.setting == "mixed" else "auto",
        )
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return model


def backbone_compute_dtype(model) -> str:
    """The compute dtype of the backbone's first convolution (what the bulk of the work runs in)."""
    import keras

    for layer in model.get_layer("backbone").layers:
        if isinstance(layer, keras.layers.Conv2D):
            return str(layer.compute_dtype)
    raise ValueError(f"The backbone of '{model.name}' has no Conv2D layer.")


def run_job(job: Job) -> dict:
    """Train `job`'s model for its steps and check it; return the figures and the failures found."""
    images, labels, class_names = read_subset(job.subset)
    import keras

    num_classes = len(class_names)
    failures = []
    result = {"backbone": job.backbone, "setting": job.setting, "policy": job.policy,
              "backend": keras.backend.backend(), "device": device_description(), "keras": keras.__version__}

    start = time.perf_counter()
    model = build_and_compile(job, num_classes, class_names)
    result["build_s"] = time.perf_counter() - start
    result["jit_compile"] = bool(model.jit_compile)
    result["augmentation_without_xla"] = augmentation_without_xla()
    if job.setting == "mixed" and not result["jit_compile"]:
        refusing = [layer.name for layer in model._flatten_layers() if not layer.supports_jit]
        failures.append(f"Keras refused XLA (jit_compile=True) for this model; layers without XLA support: {refusing}")
    result["compute_dtype"] = backbone_compute_dtype(model)
    result["output_dtype"] = str(model.output.dtype)
    if result["output_dtype"] != "float32":
        failures.append(f"the model's output (softmax) is {result['output_dtype']}, not float32, under {job.policy}")
    expected_compute = "float32" if job.setting == "float32" else job.policy.removeprefix("mixed_")
    if result["compute_dtype"] != expected_compute:
        failures.append(f"the backbone computes in {result['compute_dtype']}, not {expected_compute}, under {job.policy}")

    # Every step sees a full batch (a last partial batch would compile a second program); the
    # subset is cycled through in a shuffled order.
    rng = np.random.default_rng(job.seed)
    total = (job.warmup_steps + job.steps) * job.batch_size
    order = np.concatenate([rng.permutation(len(images)) for _ in range(-(-total // len(images)))])[:total]
    x = images[order].astype(np.float32)
    y = np.eye(num_classes, dtype=np.float32)[labels[order]]
    split = job.warmup_steps * job.batch_size
    kernel_before = keras.ops.convert_to_numpy(model.get_layer("head_dense").kernel).copy()

    warmup = _step_recorder()
    start = time.perf_counter()
    model.fit(x[:split], y[:split], batch_size=job.batch_size, epochs=1, shuffle=False, verbose=0, callbacks=[warmup])
    result["warmup_s"] = time.perf_counter() - start  # the first step compiles the training program
    _, warmup_means = warmup.times_and_means()

    timed = _step_recorder()
    start = time.perf_counter()
    model.fit(x[split:], y[split:], batch_size=job.batch_size, epochs=1, shuffle=False, verbose=0, callbacks=[timed])
    kernel_after = keras.ops.convert_to_numpy(model.get_layer("head_dense").kernel)
    result["train_s"] = time.perf_counter() - start  # the whole fit call
    finish_times, timed_means = timed.times_and_means()
    result["images_per_s"] = steady_images_per_second(finish_times, job.batch_size)
    result["epoch_s"] = FER2013_TRAIN_IMAGES / result["images_per_s"]
    result["peak_bytes"] = peak_memory_bytes()

    losses = np.concatenate([per_step_losses(warmup_means), per_step_losses(timed_means)])
    falls, first, last = loss_falls(losses)
    result.update(loss_first=first, loss_last=last, loss_falls=falls, losses=[round(float(v), 4) for v in losses])
    if not np.all(np.isfinite(losses)):
        failures.append(f"the training loss is not finite ({losses.tolist()})")
    elif not falls and job.assert_loss_falls:
        failures.append(f"the training loss did not fall: mean {first:.4f} over the first steps, {last:.4f} over the last")
    result["weights_changed"] = bool(np.any(kernel_after != kernel_before))
    if not result["weights_changed"]:
        failures.append("training left the head's weights unchanged")

    probabilities = keras.ops.convert_to_numpy(model(images[:EAGER_IMAGES].astype(np.float32), training=False))
    result["prediction_dtype"] = str(probabilities.dtype)
    if probabilities.dtype != np.float32:
        failures.append(f"predictions come out as {probabilities.dtype}, not float32, under {job.policy}")

    if job.extras:
        failures += check_gradcam(model, images, result)
        failures += check_tta(model, images, result)
    result["failures"] = failures
    return result


def check_gradcam(model, images, result: dict) -> list[str]:
    """Run Grad-CAM once on a few images; record its shape and seconds; return the failures."""
    from fer_utils.gradcam import gradcam_heatmaps

    batch = images[:EAGER_IMAGES].astype(np.float32)
    start = time.perf_counter()
    try:
        heatmaps = gradcam_heatmaps(model, batch, batch_size=EAGER_IMAGES)
    except Exception as error:  # reported as a failure of the check, with its cause
        return [f"Grad-CAM raised {type(error).__name__}: {error}"]
    result["gradcam_s"] = time.perf_counter() - start
    result["gradcam_shape"] = list(heatmaps.shape)
    if heatmaps.shape != batch.shape[:3]:
        return [f"Grad-CAM heatmaps have shape {heatmaps.shape}, expected {batch.shape[:3]}"]
    if not np.all(np.isfinite(heatmaps)) or heatmaps.min() < 0 or heatmaps.max() > 1:
        return [f"Grad-CAM heatmaps are not finite values in [0, 1] (min {heatmaps.min()}, max {heatmaps.max()})"]
    return []


def check_tta(model, images, result: dict) -> list[str]:
    """Run flip TTA once; check it is the mean of the plain and mirrored predictions; return the failures."""
    from fer_utils.models import predict

    batch = images[:EAGER_IMAGES].astype(np.float32)
    start = time.perf_counter()
    try:
        # In batches of EAGER_IMAGES: the faces, then their mirror images.
        averaged = predict(model, batch, batch_size=len(batch), tta=True)
    except Exception as error:  # reported as a failure of the check, with its cause
        return [f"TTA raised {type(error).__name__}: {error}"]
    result["tta_s"] = time.perf_counter() - start
    plain = predict(model, batch, batch_size=len(batch))
    mirrored = predict(model, batch[:, :, ::-1, :], batch_size=len(batch))
    deviation = float(np.max(np.abs(averaged - (plain + mirrored) / 2.0)))
    result["tta_deviation"] = deviation
    tolerance = TTA_TOLERANCE[result["compute_dtype"]]
    if averaged.shape != (len(batch), model.output_shape[-1]) or not np.allclose(averaged.sum(axis=1), 1.0, atol=1e-3):
        return [f"TTA probabilities have shape {averaged.shape} or rows that do not sum to 1"]
    if deviation > tolerance:
        return [f"TTA differs from the mean of the plain and mirrored predictions by {deviation:.2e} (> {tolerance})"]
    return []


class HiddenModules:
    """A wrapper of an import finder that does not find `names`, as if they were not installed.

    Unlike `sys.modules[name] = None`, this leaves `name in sys.modules` false and makes
    `importlib.util.find_spec(name)` return None, which is how Keras tells whether TensorFlow
    is there (its preprocessing layers check `"tensorflow" in sys.modules`).
    """

    def __init__(self, finder, names):
        self.finder, self.names = finder, frozenset(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.names:
            return None
        find_spec = getattr(self.finder, "find_spec", None)
        return None if find_spec is None else find_spec(fullname, path, target)

    def __getattr__(self, name):
        return getattr(self.finder, name)


def hide_tensorflow() -> None:
    """Make TensorFlow look uninstalled in this process, as on the GPU machine (call before importing keras)."""
    if "tensorflow" in sys.modules:
        raise RuntimeError("TensorFlow is already imported; it can only be hidden before anything imports it.")
    sys.meta_path[:] = [HiddenModules(finder, {"tensorflow"}) for finder in sys.meta_path]


def run_job_reporting(job: Job) -> dict:
    """`run_job`, with an error turned into a result that holds it as its failure (traceback on stderr)."""
    try:
        return run_job(job)
    except Exception as error:
        import traceback

        traceback.print_exc()
        return {"backbone": job.backbone, "setting": job.setting, "policy": job.policy,
                "failures": [f"{type(error).__name__}: {error}"]}


def child_main(job: Job) -> int:
    """Run one job and print its result as one JSON line after `RESULT_PREFIX`."""
    if str(REPO) not in sys.path:  # the package from this checkout, as on the GPU machine
        sys.path.insert(0, str(REPO))
    print(RESULT_PREFIX + json.dumps(run_job_reporting(job)), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# The whole check (the parent process): one child per backbone and setting, then the table
# ---------------------------------------------------------------------------------------------
def run_child(job: Job, allow_tensorflow: bool) -> dict:
    """Run `job` in a fresh Python process (its own device memory, its own peak), echoing its output."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(dataclasses.asdict(job))]
    if allow_tensorflow:
        command.append("--allow-tensorflow")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1)
    result = None
    for line in process.stdout:
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
        else:
            print("    " + line, end="", flush=True)
    status = process.wait()
    if result is None:
        result = {"backbone": job.backbone, "setting": job.setting, "policy": job.policy,
                  "failures": [f"the check's process exited with status {status} before reporting"]}
    return result


def format_bytes(count) -> str:
    return "n/a" if count is None else f"{count / 2**30:.2f} GiB"


def results_table(results: list[dict]) -> str:
    """The summary table: one row per backbone and setting, the mixed rows with their speed-up."""
    float32_speed = {r["backbone"]: r.get("images_per_s") for r in results if r["setting"] == "float32"}
    header = ("backbone", "setting", "XLA", "compute", "images/s", "mixed/float32", "peak GPU memory",
              "FER2013 epoch (s)", "loss first -> last")
    rows = []
    for r in results:
        speed, baseline = r.get("images_per_s"), float32_speed.get(r["backbone"])
        ratio = f"{speed / baseline:.2f}x" if r["setting"] == "mixed" and speed and baseline else "-"
        rows.append((
            r["backbone"], r["policy"], "yes" if r.get("jit_compile") else ("no" if "jit_compile" in r else "?"),
            r.get("compute_dtype", "?"), f"{speed:,.1f}" if speed else "failed", ratio,
            format_bytes(r.get("peak_bytes")) if speed else "-",
            f"{r['epoch_s']:,.1f}" if speed else "-",
            f"{r['loss_first']:.3f} -> {r['loss_last']:.3f}" if "loss_first" in r else "-",
        ))
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = [" | ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) for row in (header, *rows)]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subset", default=str(DEFAULT_SUBSET), help="The FER2013 subset (.npz) to train on.")
    parser.add_argument("--make-subset", metavar="FER2013", help="Write the subset from this FER2013 root and stop.")
    parser.add_argument("--subset-size", type=int, default=2048, help="Images in the subset --make-subset writes.")
    parser.add_argument("--backbones", default=",".join(BACKBONES), help="Comma-separated backbones to check.")
    parser.add_argument("--img-size", type=int, default=96, help="Input size of the backbones (default 96).")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60, help="Timed training steps per setting.")
    parser.add_argument("--warmup-steps", type=int, default=3, help="Untimed steps first (they compile).")
    parser.add_argument("--mixed-policy", choices=MIXED_POLICIES, default="mixed_bfloat16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--augment", action="store_true",
                        help="Put the project's random augmentation layers in the models (Keras then refuses XLA).")
    parser.add_argument("--time-budget", type=float, default=TIME_BUDGET_S,
                        help="Fail when the whole check takes longer, in seconds (0: no limit; none in a dry run).")
    parser.add_argument("--dry-run", action="store_true", help="Tiny sizes on the demo data, for a CPU (CI).")
    parser.add_argument("--allow-tensorflow", action="store_true",
                        help="Let the check import TensorFlow under JAX (by default it is kept out, as on the GPU machine).")
    parser.add_argument("--in-process", action=argparse.BooleanOptionalAction, default=None,
                        help="Run every setting in this process instead of one process each (default: only in a dry "
                             "run, where there is no GPU memory to keep apart and the shared compilations save time).")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)
    args = parse_args(argv)
    backend = os.environ["KERAS_BACKEND"]
    if args.child:
        if backend == "jax" and not args.allow_tensorflow:
            hide_tensorflow()
        return child_main(Job(**json.loads(args.child)))
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    if args.make_subset:
        path = write_subset(args.make_subset, args.subset, count=args.subset_size, seed=args.seed)
        _, labels, class_names = read_subset(path)
        counts = ", ".join(f"{name} {count}" for name, count in zip(class_names, np.bincount(labels, minlength=len(class_names))))
        print(f"Wrote {path} ({path.stat().st_size / 2**20:.1f} MiB): {len(labels)} images ({counts})")
        return 0

    in_process = args.dry_run if args.in_process is None else args.in_process
    print(f"GPU check under the {backend} Keras backend (KERAS_BACKEND={backend})"
          + (", dry run: tiny sizes on the demo data, the loss reported, its fall not asserted" if args.dry_run else "")
          + (", every setting in one process" if in_process else ", one process per setting"), flush=True)
    if in_process and backend == "jax" and not args.allow_tensorflow:
        hide_tensorflow()
    started = time.perf_counter()
    sizes = dict(img_size=args.img_size, batch_size=args.batch_size, steps=args.steps, warmup_steps=args.warmup_steps)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as scratch:
        if args.dry_run:
            sizes = {key: DRY_RUN[key] for key in sizes}
            subset = dry_run_subset(Path(scratch), DRY_RUN["subset_size"], seed=args.seed)
        else:
            subset = Path(args.subset)
            if not subset.is_file():
                print(f"No FER2013 subset at {subset}. {make_subset_hint(subset)}")
                return 2
            read_subset(subset)  # a bad file is reported here, once, rather than by every setting
        print(f"Data: {subset if not args.dry_run else 'demo subset'}; img {sizes['img_size']} px, batch "
              f"{sizes['batch_size']}, {sizes['warmup_steps']} warm-up + {sizes['steps']} timed steps per setting, "
              f"augmentation {'on' if args.augment else 'off'}", flush=True)
        results = []
        backbones = [name.strip() for name in args.backbones.split(",") if name.strip()]
        for backbone in backbones:
            for setting in SETTINGS:
                job = Job(backbone=backbone, setting=setting, subset=str(subset), mixed_policy=args.mixed_policy,
                          seed=args.seed, extras=setting == "mixed" and backbone == backbones[0], augment=args.augment,
                          assert_loss_falls=not args.dry_run, **sizes)
                print(f"== {backbone}, {job.policy}", flush=True)
                result = run_job_reporting(job) if in_process else run_child(job, args.allow_tensorflow)
                print("   " + summary_line(result), flush=True)
                results.append(result)
    wall = time.perf_counter() - started

    print()
    print(results_table(results))
    failures = [f"{r['backbone']} {r['policy']}: {failure}" for r in results for failure in r.get("failures", [])]
    without_xla = next((r["augmentation_without_xla"] for r in results if r.get("augmentation_without_xla")), None)
    if without_xla and not args.augment:
        print(f"\nNote: Keras marks the project's augmentation layers {', '.join(without_xla)} as not XLA-compilable "
              "(supports_jit=False), so a model built with augment=True, the training default, is never compiled: "
              "under JAX it trains operation by operation. These models are built without them (--augment adds them).")
    budget = 0 if args.dry_run else args.time_budget
    print(f"\nTotal wall time {wall:.1f} s" + (f" (budget {budget:.0f} s)" if budget else ""))
    if budget and wall > budget:
        failures.append(f"the check took {wall:.0f} s, more than its budget of {budget:.0f} s")
    if failures:
        print(f"GPU check FAILED ({len(failures)} problem{'s' if len(failures) > 1 else ''}):")
        for failure in failures:
            print(f"  - {failure}")
        return 1
    print("GPU check passed")
    return 0


def summary_line(result: dict) -> str:
    """One line of a setting's figures as they come in: device, compile and train seconds, extras."""
    if "images_per_s" not in result:
        return "failed: " + "; ".join(result.get("failures", []))
    parts = [result["device"], f"build {result['build_s']:.1f} s", f"warm-up (compiles) {result['warmup_s']:.1f} s",
             f"timed {result['train_s']:.1f} s", f"{result['images_per_s']:,.1f} images/s",
             f"output {result['output_dtype']}",
             f"loss falls: {'yes' if result['loss_falls'] else 'no'}{'' if result['loss_falls'] else ' (' + ', '.join(map(str, result['losses'])) + ')'}"]
    if "gradcam_s" in result:
        parts.append(f"Grad-CAM {result['gradcam_s']:.1f} s")
    if "tta_s" in result:
        parts.append(f"TTA {result['tta_s']:.1f} s (deviation {result['tta_deviation']:.1e})")
    if result.get("failures"):
        parts.append(f"{len(result['failures'])} failure(s)")
    return ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
