"""Tests for fer_utils.notebook: the notebooks' setup helpers."""

from pathlib import Path

import pytest

from fer_utils import environment, models, notebook


def test_smoke_mode_and_runs_dir_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("FER_SMOKE", raising=False)
    monkeypatch.delenv("FER_RUNS_DIR", raising=False)
    assert not environment.smoke_mode()
    assert notebook._default_runs_dir() == Path("runs")
    monkeypatch.setenv("FER_SMOKE", "1")
    monkeypatch.setenv("FER_RUNS_DIR", "/somewhere/runs")
    assert environment.smoke_mode()
    assert notebook._default_runs_dir() == Path("/somewhere/runs")


NOTEBOOK_SOURCES = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.py"))


def _parameters_cell(path: Path) -> str:
    """The source of the cell tagged "parameters" in a jupytext percent-format notebook."""
    cells = path.read_text().split("\n# %%")
    return next(cell.split("\n", 1)[1] for cell in cells if cell.startswith(' tags=["parameters"]'))


@pytest.mark.parametrize("value", [None, "", "1", "0", "true", "yes", " 1", "2"])
def test_smoke_mode_has_one_rule_in_the_library_and_in_every_notebook(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("FER_SMOKE", raising=False)
    else:
        monkeypatch.setenv("FER_SMOKE", value)
    assert environment.smoke_mode() is (value == "1")
    assert len(NOTEBOOK_SOURCES) == 6
    for path in NOTEBOOK_SOURCES:
        namespace = {}
        exec(_parameters_cell(path), namespace)  # the cell only assigns constants
        assert namespace["SMOKE"] is environment.smoke_mode(), path.name


def test_locate_data_demo_and_explicit_path(tmp_path):
    location = notebook._locate_data("demo")
    assert location.is_demo and (location.path / "train").is_dir()
    assert notebook._locate_data(location.path).source == "argument"


def test_resolve_weights_falls_back_loudly_when_imagenet_is_unavailable(monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise models.WeightsUnavailableError("the file vgg16_weights.h5 is not in ~/.keras/models")

    monkeypatch.setattr(models, "build_backbone", offline)
    assert notebook.resolve_weights("vgg16", "imagenet") is None
    shown = capsys.readouterr().out
    assert "ImageNet weights unavailable" in shown and "vgg16_weights.h5" in shown
    # Anything but "imagenet" is passed through untouched, without building anything.
    assert notebook.resolve_weights("vgg16", None) is None
    assert notebook.resolve_weights("vgg16", "local.h5") == "local.h5"


def test_resolve_weights_keeps_available_weights(monkeypatch):
    monkeypatch.setattr(models, "build_backbone", lambda *args, **kwargs: object())
    assert notebook.resolve_weights("resnet50", "imagenet") == "imagenet"


# ---------------------------------------------------------------------------------------------
# The platform guard: runs folder per platform, Drive only when asked, library versions
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def fake_platform(monkeypatch):
    """Pretend to run on a platform; record Drive mounts instead of mounting."""
    from fer_utils import environment

    mounts = []
    monkeypatch.delenv("FER_RUNS_DIR", raising=False)
    monkeypatch.setattr(notebook, "_mount_google_drive", lambda: mounts.append(notebook.COLAB_DRIVE_MOUNT))
    monkeypatch.setattr(environment, "version_problems", lambda ranges=None: [])

    def pretend(name):
        monkeypatch.setattr(environment, "platform_name", lambda: name)
        return mounts

    return pretend


def test_kaggle_runs_go_under_kaggle_working(fake_platform):
    mounts = fake_platform("kaggle")
    context = notebook.setup(data="demo", quiet=True)
    assert context.platform == "kaggle"
    assert context.runs_dir == Path("/kaggle/working/runs")
    assert mounts == []


def test_colab_mounts_drive_only_when_asked(fake_platform, capsys):
    mounts = fake_platform("colab")
    context = notebook.setup(data="demo")
    assert context.runs_dir == Path("runs") and mounts == []
    assert "RUNS_ON_DRIVE = True" in capsys.readouterr().out  # the risk is said, not acted on
    context = notebook.setup(data="demo", runs_on_drive=True, quiet=True)
    assert mounts == [Path("/content/drive")]
    assert context.runs_dir == Path("/content/drive/MyDrive/fer-notebooks/runs")


def test_runs_on_drive_is_ignored_off_colab_and_an_explicit_folder_wins(fake_platform, tmp_path, monkeypatch):
    mounts = fake_platform("local")
    assert notebook.setup(data="demo", runs_on_drive=True, quiet=True).runs_dir == Path("runs")
    fake_platform("colab")
    assert notebook.setup(data="demo", runs_on_drive=True, runs_dir=tmp_path, quiet=True).runs_dir == tmp_path
    monkeypatch.setenv("FER_RUNS_DIR", str(tmp_path / "env"))
    assert notebook.setup(data="demo", runs_on_drive=True, quiet=True).runs_dir == tmp_path / "env"
    assert mounts == []


def test_weights_dir_parameter_sets_the_lookup_folder(fake_platform, tmp_path, monkeypatch):
    fake_platform("kaggle")
    monkeypatch.delenv(models.WEIGHTS_DIR_VARIABLE, raising=False)
    notebook.setup(data="demo", weights_dir=tmp_path, quiet=True)
    assert models.pretrained_weights_folders()[0] == tmp_path
    monkeypatch.delenv(models.WEIGHTS_DIR_VARIABLE)


def test_setup_prints_one_line_per_library_outside_the_range(fake_platform, monkeypatch, capsys):
    from fer_utils import environment

    fake_platform("colab")
    monkeypatch.setattr(environment, "version_problems", lambda ranges=None: ["numpy 1.24.4 is installed, ..."])
    notebook.setup(data="demo", runs_dir=".")
    assert "WARNING: Unsupported library version. numpy 1.24.4 is installed" in capsys.readouterr().out


def test_version_problems_name_the_version_the_need_and_the_fix(monkeypatch):
    from fer_utils import environment

    installed = {"numpy": "1.24.4", "pandas": "2.2.3", "opencv-python": "5.0.0.93"}
    monkeypatch.setattr(environment, "_installed_version", lambda name: installed.get(name))
    problems = environment.version_problems(
        {"numpy": ">=2.0", "pandas": ">=2.2", "mtcnn": ">=1.0", "opencv-python": ">=4.9"}
    )
    assert problems == [
        'numpy 1.24.4 is installed, fer_utils needs numpy>=2.0: run `%pip install "numpy>=2.0"`, then restart the session.',
        'mtcnn is not installed, fer_utils needs mtcnn>=1.0: run `%pip install "mtcnn>=1.0"`, then restart the session.',
    ]


def test_this_environment_is_inside_the_installed_package_range():
    from fer_utils import environment

    assert environment.version_problems() == []
    # Any OpenCV wheel provides cv2: the platforms install opencv-python beside or instead of -headless.
    assert environment._installed_version("opencv-python-headless") is not None


def test_setup_turns_on_mixed_precision_only_with_a_gpu(fake_platform, monkeypatch, capsys):
    import keras

    fake_platform("local")
    notebook.setup(data="demo", runs_dir=".")
    assert keras.mixed_precision.global_policy().name == "float32"
    assert "Mixed precision" not in capsys.readouterr().out
    gpu = {"backend": keras.config.backend(), "gpus": ["Tesla T4"], "device": "GPU x1 (Tesla T4)", "cpu_cores": 4,
           "platform": "local"}
    monkeypatch.setattr(environment, "device_summary", lambda: gpu)
    try:
        notebook.setup(data="demo", runs_dir=".")
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        assert "Mixed precision: Keras dtype policy mixed_float16" in capsys.readouterr().out
    finally:
        keras.mixed_precision.set_global_policy("float32")
