"""Where the code runs: seeds, platform (Colab / Kaggle / local), devices and library versions.

These facts go into every run's config.json, so a result can always be traced to the machine and
the library versions that produced it.
"""

from __future__ import annotations

import os
import platform
import random
from pathlib import Path

# `FER_SMOKE=1` (and only "1") selects the tiny settings CI and `make demo` run the notebooks with.
SMOKE_VARIABLE = "FER_SMOKE"


def smoke_mode() -> bool:
    """True when `FER_SMOKE` is exactly "1": CI and `make demo` run the notebooks with tiny settings.

    The notebooks' parameters cells spell the same rule out, `os.environ.get("FER_SMOKE", "") == "1"`,
    because they run before fer_utils is installed on Colab and Kaggle; `tests/test_notebook.py`
    checks that the two agree.
    """
    return os.environ.get(SMOKE_VARIABLE, "") == "1"


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

    from fer_utils import backend

    versions = {"python": platform.python_version()}
    # The framework Keras runs on (tensorflow, jax or torch), not every one that happens to be installed.
    for package in ("fer-utils", "keras", backend.active_backend(), "numpy", "pandas", "scikit-learn"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


# Distributions that provide `cv2`; platforms install one or several of them.
OPENCV_DISTRIBUTIONS = ("opencv-python-headless", "opencv-python", "opencv-contrib-python", "opencv-contrib-python-headless")


def supported_range() -> dict[str, str]:
    """The installed fer-utils package's declared runtime requirements: {name: specifier}.

    Read from the package metadata (pyproject.toml's `dependencies`), so the range checked here is
    the one pip enforces. Empty when fer_utils runs from a source tree without being installed.
    """
    import importlib.metadata

    from packaging.requirements import Requirement

    try:
        declared = importlib.metadata.requires("fer-utils") or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    ranges = {}
    for line in declared:
        requirement = Requirement(line)
        if requirement.marker is None:  # extras (tests, notebooks tooling) carry a marker
            ranges[requirement.name] = str(requirement.specifier)
    return ranges


def installed_version(name: str) -> str | None:
    """The installed version of distribution `name` (any OpenCV wheel counts for OpenCV), or None."""
    import importlib.metadata

    candidates = OPENCV_DISTRIBUTIONS if name in OPENCV_DISTRIBUTIONS else (name,)
    for candidate in candidates:
        try:
            return importlib.metadata.version(candidate)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def version_problems(ranges: dict[str, str] | None = None) -> list[str]:
    """One line per library that is missing or outside the supported range, with the fix.

    Args:
        ranges: {distribution name: specifier}; by default `supported_range()`.

    Returns:
        Lines such as "numpy 1.24.4 is installed, fer_utils needs numpy>=2.0: run
        `%pip install "numpy>=2.0"`, then restart the session." Empty when everything fits.
    """
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    problems = []
    for name, specifier in (supported_range() if ranges is None else ranges).items():
        requirement = f"{name}{specifier}"
        fix = f'run `%pip install "{requirement}"`, then restart the session.'
        version = installed_version(name)
        if version is None:
            problems.append(f"{name} is not installed, fer_utils needs {requirement}: {fix}")
            continue
        try:
            fits = SpecifierSet(specifier).contains(Version(version), prereleases=True)
        except InvalidVersion:
            fits = True  # A local build with an odd version string: nothing to compare.
        if not fits:
            problems.append(f"{name} {version} is installed, fer_utils needs {requirement}: {fix}")
    return problems
