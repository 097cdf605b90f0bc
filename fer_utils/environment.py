"""Where the code runs: seeds, platform (Colab / Kaggle / local), devices and library versions.

These facts go into every run's config.json, so a result can always be traced to the machine and
the library versions that produced it.
"""

from __future__ import annotations

import os
import platform
import random
from pathlib import Path


def set_seeds(seed: int, deterministic: bool | None = None) -> None:
    """Seed Python, NumPy and the Keras backend, and make ops deterministic where that is cheap.

    Args:
        seed: The seed for `random`, `numpy` and Keras (`keras.utils.set_random_seed`).
        deterministic: Also enable TensorFlow op determinism. `None` (the default) enables it on
            the CPU only: it costs nothing there, whereas on GPUs some kernels have no
            deterministic version and would fail or slow down.
    """
    import keras

    from fer_utils import backend

    random.seed(seed)
    keras.utils.set_random_seed(int(seed))  # Also seeds NumPy and TensorFlow.
    if deterministic is None:
        deterministic = not backend.gpu_names()
    if deterministic:
        backend.enable_op_determinism()


def platform_name() -> str:
    """Return "colab", "kaggle" or "local", from the environment variables the hosts set."""
    if "COLAB_RELEASE_TAG" in os.environ or "COLAB_GPU" in os.environ:
        return "colab"
    if "KAGGLE_KERNEL_RUN_TYPE" in os.environ or Path("/kaggle/input").is_dir():
        return "kaggle"
    return "local"


def device_summary() -> dict:
    """Describe the compute device: backend, GPU names and a short string for tables.

    Returns:
        A dict such as `{"backend": "tensorflow", "gpus": ["Tesla T4", "Tesla T4"],
        "device": "GPU x2 (Tesla T4)", "cpu_cores": 4, "platform": "kaggle"}`.
    """
    import keras

    from fer_utils import backend

    gpus = backend.gpu_names()
    cores = os.cpu_count() or 1
    if gpus:
        device = f"GPU x{len(gpus)} ({', '.join(sorted(set(gpus)))})"
    else:
        device = f"CPU ({cores} cores)"
    return {
        "backend": keras.backend.backend(),
        "gpus": gpus,
        "device": device,
        "cpu_cores": cores,
        "platform": platform_name(),
    }


def library_versions() -> dict:
    """Return the versions of Python and the libraries that shape a run's results."""
    import importlib.metadata

    versions = {"python": platform.python_version()}
    for package in ("fer-utils", "keras", "tensorflow", "numpy", "pandas", "scikit-learn"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions
