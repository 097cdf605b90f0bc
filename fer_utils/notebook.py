"""The notebooks' setup cell: `context = notebook.setup(data=DATA, seed=SEED)`.

It chooses the Keras backend, sets the seeds, finds the dataset (FER2013 when present, else the demo
dataset with a visible notice) and the runs folder, and prints versions, backend and device, so that
every executed notebook records what it ran on.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

RUNS_VARIABLE = "FER_RUNS_DIR"
COLAB_DRIVE_MOUNT = Path("/content/drive")


@dataclasses.dataclass(frozen=True)
class NotebookContext:
    """What the setup cell found: the data (`fer_utils.data.DatasetLocation`), the runs folder, the
    platform ("colab", "kaggle", "local"), the device (`environment.device_summary`) and the seed."""

    data: "object"
    runs_dir: Path
    platform: str
    device: dict
    seed: int

    @property
    def data_path(self) -> Path:
        return self.data.path


def _default_runs_dir(platform: str = "local", on_drive: bool = False) -> Path:
    """`$FER_RUNS_DIR`; on Kaggle /kaggle/working/runs (kept with the notebook's output); on Colab with
    `on_drive` a folder on Google Drive (the VM forgets `runs/` when it disconnects); else ./runs."""
    if os.environ.get(RUNS_VARIABLE):
        return Path(os.environ[RUNS_VARIABLE])
    if platform == "kaggle":
        return Path("/kaggle/working/runs")
    if platform == "colab" and on_drive:
        return COLAB_DRIVE_MOUNT / "MyDrive" / "fer-notebooks" / "runs"
    return Path("runs")


def _mount_google_drive() -> None:
    from google.colab import drive  # Colab asks the user for permission once

    drive.mount(str(COLAB_DRIVE_MOUNT))


def _locate_data(data=None):
    """A notebook's `DATA`: None discovers (`data.find_dataset`), "demo" forces the demo dataset, else a path."""
    from fer_utils import data as data_module
    from fer_utils.demo import demo_dataset_path

    if isinstance(data, str) and data.strip().lower() == "demo":
        return data_module.DatasetLocation(demo_dataset_path(), "demo")
    with warnings.catch_warnings():
        # The notebook shows its own notice for demo data; the console warning would repeat it in red.
        warnings.simplefilter("ignore", UserWarning)
        return data_module.find_dataset(data)


def setup(data=None, seed: int = 42, runs_dir=None, quiet: bool = False, runs_on_drive: bool = False,
          weights_dir=None, backend: str | None = None) -> NotebookContext:
    """Choose the Keras backend, set seeds, find the data and the runs folder, check the libraries, print them.
    `data`: None finds FER2013 (else the demo data), "demo", or a path. `runs_dir`: None picks
    `$FER_RUNS_DIR`, /kaggle/working/runs on Kaggle, else ./runs (`runs_on_drive`: Google Drive on Colab).
    `weights_dir`: Keras's ImageNet "notop" files, searched before downloading. `backend`: "tensorflow",
    "jax", "torch" or None (`$KERAS_BACKEND`). With a GPU, Keras's dtype policy becomes "mixed_float16"
    (faster on tensor cores); `keras.mixed_precision.set_global_policy("float32")` undoes it."""
    from fer_utils import environment, models
    from fer_utils.backend import quiet_tensorflow, select_backend

    select_backend(backend)  # before anything below imports Keras, which fixes its backend
    quiet_tensorflow()  # next, so TensorFlow's C++ log lines never reach the notebook
    import keras

    if weights_dir is not None:
        os.environ[models.WEIGHTS_DIR_VARIABLE] = str(Path(weights_dir).expanduser())
    platform = environment.platform_name()
    default_runs = runs_dir is None and not os.environ.get(RUNS_VARIABLE)
    on_drive = bool(runs_on_drive) and platform == "colab" and default_runs
    if on_drive:
        _mount_google_drive()
    environment.set_seeds(seed)
    location = _locate_data(data)
    context = NotebookContext(data=location, runs_dir=Path(runs_dir) if runs_dir is not None else
                              _default_runs_dir(platform, on_drive), platform=platform,
                              device=environment.device_summary(), seed=seed)
    if context.device["gpus"]:
        keras.mixed_precision.set_global_policy("mixed_float16")
    _show_figures_inline()
    if quiet:
        return context
    versions = environment.library_versions()
    print("\n".join([
        " | ".join(f"{name} {version}" for name, version in versions.items() if version),
        f"Keras backend: {context.device['backend']} | device: {context.device['device']} | platform: {platform}",
        *(["Mixed precision: Keras dtype policy mixed_float16 (float16 compute, float32 weights)"]
          if context.device["gpus"] else []),
        f"Data: {_display_path(location.path)} (found via {location.source})",
        f"Runs folder: {context.runs_dir} | seed: {seed} | smoke mode: {environment.smoke_mode()}",
    ]))
    for problem in environment.version_problems():
        _notice("**Unsupported library version.** " + problem)
    if platform == "colab" and not on_drive and default_runs:
        _notice(f"**Runs are kept on this Colab VM only** (`{context.runs_dir}`), which forgets them when it "
                "disconnects; resuming a training run needs them. Set `RUNS_ON_DRIVE = True` in the parameters "
                "cell to keep them on your Google Drive.")
    if location.is_demo:
        _notice("**Demo data.** FER2013 was not found, so this notebook runs on the built-in demo dataset of "
                "procedurally drawn faces. Every number below describes those drawings, not real faces. To use "
                "FER2013, set `DATA` in the parameters cell (or `FER_DATA_DIR`), put it in `./data/fer2013`, or "
                "attach `msambare/fer2013` on Kaggle.")
    return context


def _show_figures_inline() -> None:
    """Show the Figures fer_utils.plots returns as images: a kernel shows them as text until the
    inline backend is selected (headless runs and nbconvert included)."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell":
        shell.run_line_magic("matplotlib", "inline")


def _display_path(path: Path) -> str:
    """`path` with the home folder shown as `~`, so printed paths do not expose the user's machine."""
    try:
        return "~/" + str(Path(path).resolve().relative_to(Path.home().resolve()))
    except ValueError:
        return str(path)


def _notice(message: str) -> None:
    """A warning as a highlighted Markdown block in Jupyter, or as a plain line elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(Markdown("> ⚠️ " + message))
    else:
        print("WARNING: " + message.replace("**", "").replace("`", ""))


def resolve_weights(backbone: str, weights):
    """A training notebook's `WEIGHTS`, with ImageNet weights downloaded now if needed; when they cannot be
    had (offline, no cached file) the error is shown prominently and None (random weights) returned."""
    from fer_utils import models

    if weights != "imagenet":
        return weights
    try:
        models.build_backbone(backbone, models.get_spec(backbone).min_img_size, "imagenet")
    except models.WeightsUnavailableError as error:
        _notice(f"**ImageNet weights unavailable: this run uses random weights.** {error} "
                "Results with random weights say nothing about transfer learning.")
        return None
    return weights
