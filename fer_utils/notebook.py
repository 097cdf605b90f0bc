"""What the notebooks' single setup cell calls: seeds, data discovery, and a report of the environment.

Every notebook starts with a parameters cell and then one setup cell:

    from fer_utils import notebook
    context = notebook.setup(data=DATA, seed=SEED)

`setup` sets the seeds, finds the dataset (real FER2013 when it is present, else the demo dataset with a
visible notice), and prints the library versions, the Keras backend and the device, so that every
executed notebook records what it ran on.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

RUNS_VARIABLE = "FER_RUNS_DIR"
KAGGLE_WORKING_DIR = Path("/kaggle/working")
COLAB_DRIVE_MOUNT = Path("/content/drive")
COLAB_DRIVE_RUNS_DIR = COLAB_DRIVE_MOUNT / "MyDrive" / "fer-notebooks" / "runs"


@dataclasses.dataclass(frozen=True)
class NotebookContext:
    """What the setup cell found: where the data and the runs are, and what the notebook runs on."""

    data: "object"  # fer_utils.data.DatasetLocation
    runs_dir: Path
    platform: str
    device: dict
    seed: int

    @property
    def data_path(self) -> Path:
        return self.data.path

    @property
    def is_demo(self) -> bool:
        return self.data.is_demo


def default_runs_dir(platform: str = "local", on_drive: bool = False) -> Path:
    """Where training notebooks write run folders and notebooks 05-06 read them.

    `$FER_RUNS_DIR` when set; on Kaggle `/kaggle/working/runs` (kept with the notebook's output);
    on Colab with `on_drive` a folder on Google Drive (a Colab VM forgets `runs/` when it
    disconnects, and resuming a run needs it; the caller mounts Drive); else `./runs`.
    """
    if os.environ.get(RUNS_VARIABLE):
        return Path(os.environ[RUNS_VARIABLE])
    if platform == "kaggle":
        return KAGGLE_WORKING_DIR / "runs"
    if platform == "colab" and on_drive:
        return COLAB_DRIVE_RUNS_DIR
    return Path("runs")


def mount_google_drive() -> None:
    """Mount Google Drive at /content/drive (Colab asks the user for permission once)."""
    from google.colab import drive

    drive.mount(str(COLAB_DRIVE_MOUNT))


def locate_data(data=None):
    """Resolve a notebook's `DATA` parameter: None discovers, "demo" forces the demo dataset, else a path."""
    from fer_utils import data as data_module
    from fer_utils.demo import demo_dataset_path

    if isinstance(data, str) and data.strip().lower() == "demo":
        return data_module.DatasetLocation(demo_dataset_path(), "demo")
    with warnings.catch_warnings():
        # The notebook shows its own notice for demo data; the console warning would repeat it in red.
        warnings.simplefilter("ignore", UserWarning)
        return data_module.find_dataset(data)


def setup(
    data=None,
    seed: int = 42,
    runs_dir=None,
    quiet: bool = False,
    runs_on_drive: bool = False,
    weights_dir=None,
    backend: str | None = None,
) -> NotebookContext:
    """Choose the Keras backend, set seeds, find the data and the runs folder, check the libraries, print them.

    Args:
        data: The notebook's `DATA` parameter (see `locate_data`).
        seed: Seed of everything random.
        runs_dir: Where run folders go; None picks the platform's default (`default_runs_dir`).
        quiet: Print nothing.
        runs_on_drive: On Colab, mount Google Drive and keep the runs there (ignored elsewhere).
        weights_dir: A folder holding Keras's ImageNet "notop" files; sets `$FER_WEIGHTS_DIR`
            for this session, so `weights="imagenet"` loads them from there before downloading.
        backend: The notebook's `BACKEND` parameter: "tensorflow", "jax" or "torch", applied before
            anything imports Keras (None: `KERAS_BACKEND`, else TensorFlow). A kernel that already
            runs Keras on another backend is a RuntimeError that says to restart it.

    Returns:
        A `NotebookContext`.
    """
    from fer_utils import environment, models
    from fer_utils.backend import quiet_tensorflow, select_backend

    select_backend(backend)  # before anything below imports Keras, which fixes its backend
    quiet_tensorflow()  # next, so TensorFlow's C++ log lines never reach the notebook
    if weights_dir is not None:
        os.environ[models.WEIGHTS_DIR_VARIABLE] = str(Path(weights_dir).expanduser())
    platform = environment.platform_name()
    on_drive = bool(runs_on_drive) and platform == "colab" and runs_dir is None and not os.environ.get(RUNS_VARIABLE)
    if on_drive:
        mount_google_drive()
    environment.set_seeds(seed)
    location = locate_data(data)
    context = NotebookContext(
        data=location,
        runs_dir=Path(runs_dir) if runs_dir is not None else default_runs_dir(platform, on_drive),
        platform=platform,
        device=environment.device_summary(),
        seed=seed,
    )
    _show_figures_inline()
    if not quiet:
        print(describe(context))
        for problem in environment.version_problems():
            _notice("**Unsupported library version.** " + problem)
        if platform == "colab" and not on_drive and runs_dir is None and not os.environ.get(RUNS_VARIABLE):
            _notice(
                f"**Runs are kept on this Colab VM only** (`{context.runs_dir}`), which forgets them when it "
                "disconnects; resuming a training run needs them. Set `RUNS_ON_DRIVE = True` in the parameters "
                "cell to keep them on your Google Drive."
            )
        if location.is_demo:
            _show_demo_notice(location.path)
    return context


def describe(context: NotebookContext) -> str:
    """A few lines naming versions, backend, device, platform, data and seed."""
    from fer_utils import environment

    versions = environment.library_versions()
    libraries = " | ".join(f"{name} {version}" for name, version in versions.items() if version)
    return "\n".join(
        [
            libraries,
            f"Keras backend: {context.device.get('backend')} | device: {context.device.get('device')}"
            f" | platform: {context.platform}",
            f"Data: {_display_path(context.data.path)} (found via {context.data.source})",
            f"Runs folder: {context.runs_dir} | seed: {context.seed} | smoke mode: {environment.smoke_mode()}",
        ]
    )


def _display_path(path: Path) -> str:
    """`path` with the home folder shown as `~`, so printed paths do not expose the user's machine."""
    try:
        return "~/" + str(Path(path).resolve().relative_to(Path.home().resolve()))
    except ValueError:
        return str(path)


def _show_figures_inline() -> None:
    """Display returned matplotlib Figures as images in Jupyter (fer_utils.plots returns Figures)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell":
        shell.run_line_magic("matplotlib", "inline")


def _notice(message: str) -> None:
    """Show a warning as a highlighted Markdown block in Jupyter, or as a plain line elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(Markdown("> ⚠️ " + message))
    else:
        print("WARNING: " + message.replace("**", "").replace("`", ""))


def _show_demo_notice(path: Path) -> None:
    message = (
        "**Demo data.** FER2013 was not found, so this notebook runs on the built-in demo dataset of "
        "procedurally drawn faces. Every number below describes those drawings, not real faces. "
        "To use FER2013, set `DATA` in the parameters cell (or `FER_DATA_DIR`), put it in "
        "`./data/fer2013`, or attach `msambare/fer2013` on Kaggle."
    )
    _notice(message)


def resolve_weights(backbone: str, weights):
    """Make sure a training notebook's `WEIGHTS` can be used, downloading ImageNet weights now if needed.

    Returns `weights` unchanged when they are available. When ImageNet weights cannot be had (no
    internet and no cached file), the library raises `WeightsUnavailableError`; here, so that a
    notebook can still be stepped through offline, the error is shown prominently with what to do,
    and None (random weights) is returned: the run then shows that the pipeline works, nothing more.
    """
    from fer_utils import models

    if weights != "imagenet":
        return weights
    try:
        models.build_backbone(backbone, models.get_spec(backbone).min_img_size, "imagenet")
    except models.WeightsUnavailableError as error:
        message = (
            f"**ImageNet weights unavailable: this run uses random weights.** {error} "
            "Results with random weights say nothing about transfer learning."
        )
        _notice(message)
        return None
    return weights
