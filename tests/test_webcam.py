"""fer_utils.webcam without a browser: the per-frame kernel work, the widget's handler, the fallback."""

import sys
import tomllib
import types
from pathlib import Path

import numpy as np
import pytest

from fer_utils import CLASS_NAMES, faces, webcam

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model():
    from fer_utils import models

    return models.build_model("small_cnn", weights=None, seed=0)


def _jpeg(image_rgb) -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return encoded.tobytes()


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter = max(0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0, min(ay + ah, by + bh) - max(ay, by))
    return inter / (aw * ah + bw * bh - inter)


@pytest.fixture(scope="module")
def photo_jpeg():
    return _jpeg(faces.load_image(faces.sample_photo_path()))


def test_process_frame_finds_and_labels_the_sample_face(model, photo_jpeg):
    result = webcam.process_frame(photo_jpeg, model)
    assert (result["width"], result["height"]) == (512, 600)
    assert result["detector"] == faces.resolve_detector(live=True)
    assert len(result["faces"]) == 1
    face = result["faces"][0]
    assert _iou(face["box"], faces.SAMPLE_FACE_BOX) > 0.5
    assert face["label"] in CLASS_NAMES
    assert list(face["probabilities"]) == list(CLASS_NAMES)
    assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert face["confidence"] == pytest.approx(max(face["probabilities"].values()))
    assert face["probabilities"][face["label"]] == face["confidence"]
    assert result["seconds"] > 0


def test_process_frame_agrees_with_predict_faces(model, photo_jpeg):
    import cv2

    image = cv2.cvtColor(cv2.imdecode(np.frombuffer(photo_jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    expected = faces.predict_faces(model, image, detector=faces.resolve_detector(live=True))
    result = webcam.process_frame(photo_jpeg, model)
    assert [face["box"] for face in result["faces"]] == [list(p.box) for p in expected]
    assert [face["label"] for face in result["faces"]] == [p.label for p in expected]


def test_process_frame_uses_the_given_class_names(model, photo_jpeg):
    names = [f"class {i}" for i in range(len(CLASS_NAMES))]
    face = webcam.process_frame(photo_jpeg, model, class_names=names)["faces"][0]
    assert face["label"] in names
    assert list(face["probabilities"]) == names


def test_process_frame_without_a_face_returns_no_boxes(model):
    result = webcam.process_frame(_jpeg(np.full((240, 320, 3), 128, np.uint8)), model)
    assert result["faces"] == []
    assert (result["width"], result["height"]) == (320, 240)


@pytest.mark.parametrize("data", [b"", b"not a jpeg at all"])
def test_process_frame_rejects_bytes_that_are_not_an_image(model, data):
    with pytest.raises(ValueError, match="Could not decode"):
        webcam.process_frame(data, model)


def _local_notebook_kernel(monkeypatch):
    """Pretend to run in a local Jupyter kernel (no smoke mode, not Kaggle or Colab)."""
    for name in ("FER_SMOKE", "KAGGLE_KERNEL_RUN_TYPE", "COLAB_RELEASE_TAG", "COLAB_GPU"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(webcam.environment, "platform_name", lambda: "local")
    shell = types.SimpleNamespace(kernel=object())
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))


def test_live_view_in_smoke_mode_says_so_in_one_line_and_returns_none(monkeypatch, capsys, model):
    monkeypatch.setenv("FER_SMOKE", "1")
    assert webcam.live_view(model) is None
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Live webcam unavailable: FER_SMOKE is set")
    assert "video file" in lines[0]


def test_kaggle_has_no_camera(monkeypatch, capsys, model):
    _local_notebook_kernel(monkeypatch)
    monkeypatch.setattr(webcam.environment, "platform_name", lambda: "kaggle")
    assert webcam.live_view(model) is None
    assert "Kaggle" in capsys.readouterr().out


def test_missing_anywidget_is_named(monkeypatch):
    _local_notebook_kernel(monkeypatch)
    real_find_spec = webcam.importlib.util.find_spec
    monkeypatch.setattr(webcam.importlib.util, "find_spec", lambda name: None if name == "anywidget" else real_find_spec(name))
    assert "pip install anywidget" in webcam.unavailable_reason()


def test_outside_a_kernel_is_named(monkeypatch):
    _local_notebook_kernel(monkeypatch)
    pytest.importorskip("anywidget")
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None))
    assert "not a Jupyter kernel" in webcam.unavailable_reason()


def test_a_local_kernel_with_anywidget_can_run_it(monkeypatch):
    pytest.importorskip("anywidget")
    _local_notebook_kernel(monkeypatch)
    assert webcam.unavailable_reason() is None


def test_colab_switches_on_its_custom_widget_manager(monkeypatch, model):
    calls = []
    output = types.SimpleNamespace(enable_custom_widget_manager=lambda: calls.append("enabled"))
    monkeypatch.setitem(sys.modules, "google", types.SimpleNamespace(colab=types.SimpleNamespace(output=output)))
    monkeypatch.setitem(sys.modules, "google.colab", types.SimpleNamespace(output=output))
    monkeypatch.setattr(webcam, "unavailable_reason", lambda: None)
    monkeypatch.setattr(webcam, "webcam_view", lambda *args, **kwargs: "widget")
    for platform, expected in (("colab", ["enabled"]), ("local", ["enabled"])):
        monkeypatch.setattr(webcam.environment, "platform_name", lambda: platform)
        assert webcam.live_view(model) == "widget" and calls == expected


def test_the_widget_answers_a_frame_message_and_counts(model, photo_jpeg):
    pytest.importorskip("anywidget")
    view = webcam.webcam_view(model, warm_up=False, max_width=320)
    sent = []
    view.send = lambda content, buffers=None: sent.append(content)
    view._on_frame(view, {"type": "frame", "id": 7}, [memoryview(photo_jpeg)])
    view._on_frame(view, {"type": "frame", "id": 8}, [memoryview(_jpeg(np.zeros((96, 96, 3), np.uint8)))])
    assert [message["id"] for message in sent] == [7, 8]
    assert len(sent[0]["faces"]) == 1 and sent[1]["faces"] == []
    assert (view.frames, view.faces_found) == (2, 1)
    assert view.last_labels == []
    assert view.max_width == 320
    assert view.detector == faces.resolve_detector(live=True)


def test_a_bad_frame_is_reported_to_the_page_and_the_loop_goes_on(model):
    pytest.importorskip("anywidget")
    view = webcam.webcam_view(model, warm_up=False)
    sent = []
    view.send = lambda content, buffers=None: sent.append(content)
    view._on_frame(view, {"type": "frame", "id": 1}, [b"garbage"])
    view._on_frame(view, {"type": "other"}, [b"ignored"])
    assert len(sent) == 1 and sent[0]["id"] == 1 and "Could not decode" in sent[0]["error"]
    assert view.frames == 0 and "ValueError" in view.error


def test_the_front_end_ships_as_package_data():
    assert webcam.FRONT_END.is_file()
    source = webcam.FRONT_END.read_text()
    assert "export default" in source and "getUserMedia" in source
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    relative = webcam.FRONT_END.relative_to(Path(webcam.__file__).resolve().parent)  # installed or not
    assert any(relative.match(pattern) for pattern in package_data["fer_utils"])
