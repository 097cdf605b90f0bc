"""Where the code runs: seeds, platform (Colab / Kaggle / local), devices and library versions, which go
into every run's config.json."""

from __future__ import annotations

import os
import platform
import random
from pathlib import Path

# `FER_SMOKE=1` (and only "1") selects the tiny settings CI and `make demo` run the notebooks with.
SMOKE_VARIABLE = "FER_SMOKE"
# Distributions that provide `cv2`; platforms install one or several of them.
OPENCV_DISTRIBUTIONS = ("opencv-python-headless", "opencv-python", "opencv-contrib-python",
                        "opencv-contrib-python-headless")


def smoke_mode() -> bool:
    """True when `FER_SMOKE` is exactly "1" (the notebooks' parameters cells spell out the same rule,
    as they run before fer_utils is installed; `tests/test_notebook.py` checks that they agree)."""
    return os.environ.get(SMOKE_VARIABLE, "") == "1"


def set_seeds(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend; on a CPU also make the backend's ops deterministic
    (free there, whereas on GPUs some kernels have no deterministic version)."""
    import keras

    from fer_utils import backend

    random.seed(seed)
    keras.utils.set_random_seed(int(seed))  # also seeds NumPy and TensorFlow
    if not backend.gpu_names():
        backend.enable_op_determinism()


def platform_name() -> str:
    """"colab", "kaggle" or "local", from the environment variables the hosts set."""
    if "COLAB_RELEASE_TAG" in os.environ or "COLAB_GPU" in os.environ:
        return "colab"
    if "KAGGLE_KERNEL_RUN_TYPE" in os.environ or Path("/kaggle/input").is_dir():
        return "kaggle"
    return "local"


def device_summary() -> dict:
    """The compute device: backend, GPU names, a summary such as "GPU x2 (Tesla T4)", CPU cores, platform."""
    import keras

    from fer_utils import backend

    gpus = backend.gpu_names()
    cores = os.cpu_count() or 1
    device = f"GPU x{len(gpus)} ({', '.join(sorted(set(gpus)))})" if gpus else f"CPU ({cores} cores)"
    return {"backend": keras.backend.backend(), "gpus": gpus, "device": device, "cpu_cores": cores,
            "platform": platform_name()}


def library_versions() -> dict:
    """The versions of Python and of the libraries that shape a run's results."""
    from fer_utils import backend

    # The framework Keras runs on, not every one that happens to be installed.
    packages = ("fer-utils", "keras", backend.active_backend(), "numpy", "pandas", "scikit-learn")
    return {"python": platform.python_version(), **{package: _installed_version(package) for package in packages}}


def _installed_version(name: str) -> str | None:
    """The installed version of distribution `name` (any OpenCV wheel counts for OpenCV), or None."""
    import importlib.metadata

    for candidate in OPENCV_DISTRIBUTIONS if name in OPENCV_DISTRIBUTIONS else (name,):
        try:
            return importlib.metadata.version(candidate)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def version_problems(ranges: dict[str, str] | None = None) -> list[str]:
    """One line per library missing or outside its supported range, with the fix. `ranges` ({distribution:
    specifier}) defaults to the installed fer-utils's own requirements (none from an uninstalled tree)."""
    import importlib.metadata

    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    if ranges is None:
        try:
            requirements = [Requirement(line) for line in importlib.metadata.requires("fer-utils") or []]
        except importlib.metadata.PackageNotFoundError:
            requirements = []
        # Extras (tests, notebook tooling) carry a marker; a notebook kernel does not need them.
        ranges = {requirement.name: str(requirement.specifier) for requirement in requirements
                  if requirement.marker is None}
    problems = []
    for name, specifier in ranges.items():
        requirement, version = f"{name}{specifier}", _installed_version(name)
        fix = f'run `%pip install "{requirement}"`, then restart the session.'
        if version is None:
            problems.append(f"{name} is not installed, fer_utils needs {requirement}: {fix}")
            continue
        try:
            fits = SpecifierSet(specifier).contains(Version(version), prereleases=True)
        except InvalidVersion:
            fits = True  # a local build with an odd version string: nothing to compare
        if not fits:
            problems.append(f"{name} {version} is installed, fer_utils needs {requirement}: {fix}")
    return problems
