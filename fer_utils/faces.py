"""Faces in photos: detect, crop to the models' 48x48 input, classify and draw.

Video streams and files (frame loop, capture, writing, the synthetic test video) are in
`fer_utils.video`, which builds on this module.

Two face detectors, both with their model inside a registry package, so nothing is downloaded at
run time, and `detector="auto"` takes the first one that can run here, in the order of `DETECTORS`:

1. "mtcnn": the MTCNN networks of the `mtcnn` package (its weights ship in the wheel). Its networks
   are Keras models and run on the TensorFlow or JAX backend; the package's code around them is
   written in TensorFlow, so TensorFlow must be installed (as on Colab and Kaggle). Beside PyTorch
   it crashes the process, so on the PyTorch backend it is not offered. Works with OpenCV 4 and 5.
2. "haar": OpenCV's frontal-face Haar cascade, whose XML ships in the OpenCV 4 wheels
   (`cv2.data.haarcascades`). OpenCV 5's wheels no longer have it (nor `cv2.CascadeClassifier`).

MTCNN comes first because it is the better detector on `benchmarks/bench_detectors.py`: it found
all 10 faces of the benchmark (the sample photo, copies rotated by +-15 and +-30 degrees and
scaled to 50% and 25%, two side by side, one pasted on a street photo) with 1 false box on six
images without a face, where the Haar cascade found 7 (it misses rotations beyond about 10
degrees) with 3 false boxes; and it gives the same boxes under OpenCV 4 and 5, so results (and
notebook 06's checked outputs) do not depend on the OpenCV version. It costs about three times
the Haar cascade's time at the default min_size of 48 (median 225 against 67 ms per image on two
busy CPU cores), and seconds once per process to build; the Haar cascade remains the fast choice
(`detector="haar"`) and the fallback where `mtcnn` is missing. `resolve_detector` says which detector runs;
`predict_faces` and `video.run_video` report it. OpenCV's YuNet (`cv2.FaceDetectorYN`) is not offered:
no PyPI package ships its ONNX model in the wheel.

Either way `detect_faces` returns square (x, y, w, h) boxes inside the image, so crops and the
48x48 model input do not depend on the detector.

A saved model does its own preprocessing (see `fer_utils.models`), so `crop_faces` hands it raw
grayscale pixels 0..255 at 48x48, exactly the format of FER2013, and nothing else.

Colour images are RGB throughout, as returned by `load_image`; OpenCV's BGR order only appears
inside the functions that read and write files.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
from pathlib import Path

import numpy as np

from fer_utils import CLASS_NAMES, backend
from fer_utils.loading import load_model

FACE_SIZE = 48
CASCADE_FILE = "haarcascade_frontalface_default.xml"
# The order in which `detector="auto"` tries the detectors (see the module docstring for why).
DETECTORS = ("mtcnn", "haar")
# MTCNN's first-stage (proposal) threshold; see `_detect_mtcnn`.
MTCNN_PNET_THRESHOLD = 0.5
# What to install for each detector, quoted by the error messages.
DETECTOR_INSTALL = {
    "haar": "pip install 'opencv-python-headless>=4.9,<5'",
    "mtcnn": "pip install 'mtcnn>=1.0'",
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
SAMPLE_PHOTO = "grace_hopper.jpg"
# Where Grace Hopper's face is in matplotlib's sample photo (x, y, w, h): the Haar cascade's box,
# measured once (MTCNN's squared box lies within 6 px of it). A constant, so the test video, the
# tests and the detector benchmark do not depend on the detector they are meant to test.
SAMPLE_FACE_BOX = (155, 105, 222, 222)
# Box and text colour (RGB) of `annotate`.
DEFAULT_COLOR = (40, 220, 90)


@dataclasses.dataclass(frozen=True)
class FacePrediction:
    """One detected face and the model's verdict on it.

    Attributes:
        box: (x, y, width, height) of the face in image pixels.
        label: the most probable class name.
        confidence: the probability of `label`.
        probabilities: float array of shape (num_classes,), in the model's class order.
        detector: the detector that found the face ("haar" or "mtcnn"), or None when the caller
            passed the boxes.
    """

    box: tuple[int, int, int, int]
    label: str
    confidence: float
    probabilities: np.ndarray
    detector: str | None = None


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------
def sample_photo_path() -> Path:
    """Path of `grace_hopper.jpg`, the public-domain portrait that ships with matplotlib."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / SAMPLE_PHOTO
    if not path.is_file():
        raise FileNotFoundError(
            f"matplotlib's sample photo is missing at '{path}'. Reinstall matplotlib "
            "(pip install --force-reinstall matplotlib) or pass another photo."
        )
    return path


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as an RGB uint8 array of shape (height, width, 3).

    Grayscale and 16-bit files are converted; the EXIF orientation of photos is applied.

    Raises:
        FileNotFoundError: there is no file at `path`.
        ValueError: the file is not an image OpenCV can decode.
    """
    import cv2

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No image file at '{path}'. Check the path.")
    # np.fromfile + imdecode also handles non-ASCII paths, which cv2.imread does not on every platform.
    raw = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(raw, cv2.IMREAD_COLOR) if raw.size else None
    if image is None:
        raise ValueError(
            f"Cannot decode '{path}' as an image. Pass a photo in a common format (JPEG, PNG, BMP, TIFF, WebP)."
        )
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
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"Could not write the image '{path}'. Check that its folder is writable.")
    return path


def _check_image(image) -> np.ndarray:
    """Validate an image array: uint8, (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(
            f"Expected a uint8 image (pixel values 0..255), got dtype {image.dtype}. "
            "Use load_image, or convert with (image * 255).astype(np.uint8) for images in 0..1."
        )
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(
            f"Expected an image of shape (height, width) or (height, width, 1|3|4), got {image.shape}."
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"The image is empty (shape {image.shape}).")
    return image


def to_gray(image: np.ndarray) -> np.ndarray:
    """A 2-D uint8 grayscale copy of an RGB, RGBA or grayscale image."""
    import cv2

    image = _check_image(image)
    if image.ndim == 2:
        return image
    if image.shape[2] == 1:
        return image[:, :, 0]
    code = cv2.COLOR_RGB2GRAY if image.shape[2] == 3 else cv2.COLOR_RGBA2GRAY
    return cv2.cvtColor(image, code)


# ---------------------------------------------------------------------------------------------
# Detection and crops
# ---------------------------------------------------------------------------------------------
def cascade_path() -> Path:
    """Path of OpenCV's frontal-face Haar cascade inside the installed OpenCV wheel."""
    import cv2

    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(folder) / CASCADE_FILE if folder else None
    if path is None or not path.is_file() or not hasattr(cv2, "CascadeClassifier"):
        raise FileNotFoundError(
            f"OpenCV's face detector '{CASCADE_FILE}' is not available in the installed OpenCV "
            f"{cv2.__version__} (looked in '{folder}'). OpenCV 5 no longer ships Haar cascades in its pip "
            f"wheels; use detector='mtcnn' ({DETECTOR_INSTALL['mtcnn']}), or install OpenCV 4 with: "
            f"{DETECTOR_INSTALL['haar']}."
        )
    return path


@functools.lru_cache(maxsize=None)
def _load_cascade(path: str):
    """Load a cascade once per process; detection reuses it for every image and frame."""
    import cv2

    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise ValueError(f"OpenCV could not load the face detector '{path}'; the file may be damaged.")
    return cascade


class _SkipWhenEmpty:
    """Wraps an mtcnn stage so that no proposals left means no face, under every Keras 3.

    mtcnn 1.0 ends the search when TensorFlow raises InvalidArgumentError on an empty batch of
    proposals; Keras 3.13 (Colab's) raises a ValueError there instead, which would escape. This
    raises mtcnn's own signal before the empty batch reaches the network.
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
    """Runs an mtcnn network on the active Keras backend and hands its outputs back as TensorFlow tensors.

    mtcnn 1.0 post-processes its networks' outputs with TensorFlow ops, which take neither JAX
    arrays nor PyTorch tensors; NumPy is the common ground. `predict_on_batch` compiles the whole
    network once per input shape (on JAX calling it op by op took four times longer for each new
    image size). Under the TensorFlow backend the network is left as it is.
    """

    def __init__(self, network):
        self._network = network

    def __call__(self, images):
        import tensorflow as tf

        outputs = self._network.predict_on_batch(np.asarray(images))
        return [tf.convert_to_tensor(np.asarray(output)) for output in outputs]


@functools.lru_cache(maxsize=None)
def _load_mtcnn():
    """Build the MTCNN detector once per process: it loads three networks, which takes seconds."""
    # Keeps TensorFlow's C++ logs below warnings quiet when mtcnn is the first to import
    # TensorFlow; it has no effect once TensorFlow is loaded.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mtcnn import MTCNN
    from mtcnn.stages import StageONet, StagePNet, StageRNet

    # All three stages: the last network (ONet) refines the boxes and rejects most false ones. The
    # networks are tiny, so the CPU is as fast as a GPU here and leaves the GPU to the classifier.
    stages = [StagePNet(), StageRNet(), StageONet()]
    if backend.active_backend() != "tensorflow":
        for stage in stages:
            stage._model = _NetworkOutputsAsTensorFlow(stage._model)
    stages = [stages[0], *(_SkipWhenEmpty(stage) for stage in stages[1:])]
    return MTCNN(stages=stages, device="CPU:0")


def _unavailable_reason(name: str) -> str | None:
    """Why the detector `name` cannot run here, or None when it can."""
    if name == "haar":
        try:
            cascade_path()
        except FileNotFoundError as error:
            return str(error)
        return None
    if name == "mtcnn":
        # find_spec looks for the package without importing it (importing pulls in TensorFlow).
        if importlib.util.find_spec("mtcnn") is None:
            return f"the 'mtcnn' package is not installed; install it with: {DETECTOR_INSTALL['mtcnn']}."
        # Its networks are Keras models (any backend), but the code around them is TensorFlow.
        running = backend.active_backend()
        if running == "torch":
            # Measured with PyTorch 2.14.1 and TensorFlow 2.21: the first detection crashes the
            # process (a segmentation fault while PyTorch imports its compiler beside TensorFlow).
            return ("the 'mtcnn' package's TensorFlow code crashes beside PyTorch in one process; on the "
                    "PyTorch backend use the Haar cascade of OpenCV 4, or set BACKEND = 'tensorflow' or 'jax'.")
        if importlib.util.find_spec("tensorflow") is None:
            return ("the 'mtcnn' package needs TensorFlow installed, whichever Keras backend runs; install it "
                    "with: pip install tensorflow (or use the Haar cascade of OpenCV 4).")
        return None
    raise ValueError(f"Unknown face detector '{name}'. Use 'auto' or one of {list(DETECTORS)}.")


def available_detectors() -> tuple[str, ...]:
    """The detectors that can run in this environment, in the order `detector="auto"` tries them."""
    return tuple(name for name in DETECTORS if _unavailable_reason(name) is None)


def resolve_detector(detector: str = "auto") -> str:
    """The name of the detector that `detect_faces(..., detector=detector)` runs: "haar" or "mtcnn".

    "auto" is the first available detector of `DETECTORS`.

    Raises:
        ValueError: `detector` is not "auto" or one of `DETECTORS`.
        FileNotFoundError: the requested detector (or, for "auto", every detector) is not
            available; the message says why and what to install.
    """
    if detector != "auto":
        reason = _unavailable_reason(detector)
        if reason is not None:
            raise FileNotFoundError(f"The face detector '{detector}' is not available: {reason}")
        return detector
    reasons = {name: _unavailable_reason(name) for name in DETECTORS}
    for name, reason in reasons.items():
        if reason is None:
            return name
    details = " ".join(f"[{name}] {reason}" for name, reason in reasons.items())
    raise FileNotFoundError(
        f"No face detector is available. {details} Install one: {DETECTOR_INSTALL['mtcnn']} "
        f"(works with OpenCV 4 and 5), or {DETECTOR_INSTALL['haar']} for the Haar cascade."
    )


def _square_inside(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Make (x, y, w, h) boxes square (side = the longer side, same centre), moved inside the image.

    MTCNN's boxes are taller than wide; the Haar cascade's are square. Squaring them keeps the boxes
    callers get alike whichever detector ran, and `crop_faces` cuts the same square either way.
    """
    side = np.minimum(np.maximum(boxes[:, 2], boxes[:, 3]), min(height, width))
    left = np.clip(np.round(boxes[:, 0] + boxes[:, 2] / 2 - side / 2), 0, width - side)
    top = np.clip(np.round(boxes[:, 1] + boxes[:, 3] / 2 - side / 2), 0, height - side)
    return np.stack([left, top, side, side], axis=1).astype(np.int64)


def _detect_haar(image: np.ndarray, min_size: int, scale_factor: float, min_neighbors: int) -> np.ndarray:
    cascade = _load_cascade(str(cascade_path()))
    boxes = cascade.detectMultiScale(
        to_gray(image), scaleFactor=scale_factor, minNeighbors=min_neighbors,
        minSize=(int(min_size), int(min_size)),
    )
    return np.asarray(boxes, dtype=np.int64).reshape(-1, 4)


def _detect_mtcnn(image: np.ndarray, min_size: int) -> np.ndarray:
    image = _check_image(image)
    # MTCNN wants 3 channels; its networks were trained on RGB.
    if image.ndim == 2 or image.shape[2] == 1:
        image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    # mtcnn 1.0 sizes its image pyramid from the image alone, so a minimum face size above 20 px
    # leaves scales below its 12-px network input and it then reports no face at all. Search from
    # 20 px (or less) and drop the small boxes afterwards.
    # A first-stage threshold of 0.5 instead of mtcnn's 0.6 passes a few more proposals on; the two
    # later networks still reject the false ones, and faces the default missed in some frames of
    # `video.write_test_video` are found.
    found = _load_mtcnn().detect_faces(
        np.ascontiguousarray(image), min_face_size=min(int(min_size), 20), threshold_pnet=MTCNN_PNET_THRESHOLD
    )
    boxes = np.asarray([face["box"] for face in found], dtype=np.float64).reshape(-1, 4)
    boxes = boxes[(boxes[:, 2] > 0) & (boxes[:, 3] > 0)]
    boxes = _square_inside(boxes, image.shape[0], image.shape[1])
    return boxes[boxes[:, 2] >= min_size]


def detect_faces(
    image: np.ndarray,
    min_size: int = 48,
    scale_factor: float = 1.1,
    min_neighbors: int = 5,
    detector: str = "auto",
) -> np.ndarray:
    """Find frontal faces with the first available detector (see `DETECTORS`) or the one named.

    Args:
        image: uint8 image, RGB, RGBA or grayscale (BGR works as well with the Haar cascade, which
            reads grayscale; MTCNN finds faces in BGR too, with slightly different boxes).
        min_size: smallest face side, in pixels, to keep. Faces smaller than 48 px would have to be
            upscaled for the models, so the default skips them.
        scale_factor: Haar only: step between the detector's scales; smaller finds more faces,
            slower. MTCNN keeps its own image pyramid (each scale 0.709 of the previous one).
        min_neighbors: Haar only: overlapping hits needed to accept a face; larger means fewer false
            positives. MTCNN keeps its own confidence thresholds.
        detector: "auto" (the first available of `DETECTORS`), "haar" or "mtcnn";
            `resolve_detector` tells which one "auto" picks here.

    Returns:
        int64 array of shape (K, 4): one square (x, y, width, height) box per face, inside the
        image, sorted left to right.
    """
    if min_size < 1:
        raise ValueError(f"min_size must be a positive number of pixels, got {min_size}.")
    if scale_factor <= 1.0:
        raise ValueError(f"scale_factor must be greater than 1 (for example 1.1), got {scale_factor}.")
    if min_neighbors < 0:
        raise ValueError(f"min_neighbors must be 0 or more, got {min_neighbors}.")
    _check_image(image)
    name = resolve_detector(detector)
    if name == "haar":
        boxes = _detect_haar(image, min_size, scale_factor, min_neighbors)
    else:
        boxes = _detect_mtcnn(image, min_size)
    return boxes[np.lexsort((boxes[:, 1], boxes[:, 0]))]


def _check_boxes(boxes) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4) if len(boxes) else np.zeros((0, 4), np.int64)
    if (boxes[:, 2:] <= 0).any():
        raise ValueError(f"Face boxes are (x, y, width, height) with positive sizes; got {boxes.tolist()}.")
    return boxes


def crop_faces(image: np.ndarray, boxes, margin: float = 0.1) -> np.ndarray:
    """Cut each box out of the image as a 48x48 grayscale face, the exact input of the models.

    Each box is grown by `margin` times its size on every side (FER2013 faces include a little
    forehead and chin) and kept square; parts outside the image repeat the border pixels.
    The pixels are raw 0..255: the model does its own preprocessing.

    Returns:
        uint8 array of shape (K, 48, 48, 1).
    """
    import cv2

    if margin < 0:
        raise ValueError(f"margin must be 0 or more (a fraction of the box size), got {margin}.")
    gray = to_gray(image)
    boxes = _check_boxes(boxes)
    crops = np.empty((len(boxes), FACE_SIZE, FACE_SIZE, 1), dtype=np.uint8)
    height, width = gray.shape
    for index, (x, y, box_width, box_height) in enumerate(boxes):
        side = int(round(max(box_width, box_height) * (1.0 + 2.0 * margin)))
        left = int(round(x + box_width / 2 - side / 2))
        top = int(round(y + box_height / 2 - side / 2))
        # Pad with the border pixels where the square reaches outside the image.
        pad_left, pad_top = max(0, -left), max(0, -top)
        pad_right, pad_bottom = max(0, left + side - width), max(0, top + side - height)
        region = gray[max(0, top) : top + side, max(0, left) : left + side]
        if pad_left or pad_top or pad_right or pad_bottom:
            region = cv2.copyMakeBorder(region, pad_top, pad_bottom, pad_left, pad_right, cv2.BORDER_REPLICATE)
        interpolation = cv2.INTER_AREA if side >= FACE_SIZE else cv2.INTER_LINEAR
        crops[index, :, :, 0] = cv2.resize(region, (FACE_SIZE, FACE_SIZE), interpolation=interpolation)
    return crops


# ---------------------------------------------------------------------------------------------
# Prediction
# ---------------------------------------------------------------------------------------------
def predict_batch(model, crops: np.ndarray) -> np.ndarray:
    """Class probabilities for a small batch of crops in one call.

    `predict_on_batch` skips the dataset pipeline that `predict` builds on every call, which
    matters in a per-frame video loop.
    """
    batch = crops.astype(np.float32)
    predict = getattr(model, "predict_on_batch", None)
    output = predict(batch) if predict is not None else model.predict(batch, verbose=0)
    return np.asarray(output, dtype=np.float64).reshape(len(crops), -1)


def predict_faces(
    model,
    image: np.ndarray,
    class_names=None,
    boxes=None,
    margin: float = 0.1,
    min_size: int = 48,
    scale_factor: float = 1.1,
    min_neighbors: int = 5,
    detector: str = "auto",
) -> list[FacePrediction]:
    """Detect the faces of an image and classify each one.

    Args:
        model: a Keras model (raw 48x48x1 pixels in, class probabilities out), a
            `fer_utils.runs.Run`, or a run folder / .keras path.
        image: uint8 RGB or grayscale image.
        class_names: class names in the model's output order; defaults to the run's, else
            `fer_utils.CLASS_NAMES`.
        boxes: (K, 4) face boxes to classify instead of running the detector.
        margin: see `crop_faces`. min_size, scale_factor, min_neighbors, detector: see `detect_faces`.

    Returns:
        One `FacePrediction` per face, left to right, each naming the detector that found it. The model is called once, on all faces
        together, and not at all when there is no face.
    """
    loaded = load_model(model, class_names)
    model, class_names = loaded.model, loaded.class_names
    detector_name = None
    if boxes is None:
        detector_name = resolve_detector(detector)
        boxes = detect_faces(
            image, min_size=min_size, scale_factor=scale_factor, min_neighbors=min_neighbors, detector=detector_name
        )
    boxes = _check_boxes(boxes)
    if len(boxes) == 0:
        return []
    probabilities = predict_batch(model, crop_faces(image, boxes, margin=margin))
    predictions = []
    for box, row in zip(boxes, probabilities):
        best = int(np.argmax(row))
        predictions.append(
            FacePrediction(
                box=tuple(int(value) for value in box),
                label=class_names[best],
                confidence=float(row[best]),
                probabilities=row,
                detector=detector_name,
            )
        )
    return predictions


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------
def annotate(image: np.ndarray, predictions, color=DEFAULT_COLOR) -> np.ndarray:
    """Return a copy of `image` with a box and a "label 87%" caption drawn for each prediction.

    `color` is an RGB triple; on grayscale images its brightest component is used.
    """
    import cv2

    canvas = _check_image(image).copy()
    if canvas.ndim == 2 or canvas.shape[2] == 1:
        ink, text_ink = (max(color),), (0,)
    else:
        ink, text_ink = tuple(int(c) for c in color), (0, 0, 0)
        if canvas.shape[2] == 4:
            ink, text_ink = ink + (255,), text_ink + (255,)
    height, width = canvas.shape[:2]
    for prediction in predictions:
        x, y, box_width, box_height = (int(value) for value in prediction.box)
        thickness = max(1, round(box_width / 60))
        cv2.rectangle(canvas, (x, y), (x + box_width, y + box_height), ink, thickness)
        text = f"{prediction.label} {prediction.confidence:.0%}"
        font_scale = float(np.clip(box_width / 180, 0.4, 1.5))
        font_thickness = max(1, round(font_scale * 1.5))
        (text_width, text_height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, font_thickness)
        # The caption sits on a filled band above the box, or inside its top edge when there is no room.
        band_height = text_height + baseline + 4
        top = y - band_height if y - band_height >= 0 else y
        left = int(np.clip(x, 0, max(0, width - text_width - 4)))
        cv2.rectangle(canvas, (left, top), (left + text_width + 4, top + band_height), ink, -1)
        cv2.putText(
            canvas, text, (left + 2, top + text_height + 2), cv2.FONT_HERSHEY_SIMPLEX,
            font_scale, text_ink, font_thickness, cv2.LINE_AA,
        )
    return canvas
