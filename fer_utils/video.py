"""Faces in video: a frame loop over a webcam or a video file (`run_video`), and a synthetic test clip.

Frames are RGB, as in `fer_utils.faces`; OpenCV's BGR order appears only where files are read and written.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from fer_utils import data, faces, models
from fer_utils.loading import load_model

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
_FOURCC = {".avi": "MJPG", ".mp4": "mp4v", ".mov": "mp4v", ".mkv": "mp4v"}


@dataclasses.dataclass(frozen=True)
class VideoOptions:
    """The settings of `run_video` callers rarely change: `class_names` (default: the run's), `max_frames`
    (None: all), `every_n` (analyse every n-th frame, reuse its faces in between), `show` (live in Jupyter),
    `min_size` and `detector` (see `faces.detect_faces`)."""

    class_names: Sequence[str] | None = None
    max_frames: int | None = None
    every_n: int = 1
    show: bool = False
    min_size: int = 48
    detector: str = "auto"

    def __post_init__(self):
        if self.every_n < 1:
            raise ValueError(f"every_n must be 1 or more, got {self.every_n}.")
        if self.max_frames is not None and self.max_frames < 0:
            raise ValueError(f"max_frames must be 0 or more (or None for no limit), got {self.max_frames}.")


def is_video_path(path: str | os.PathLike) -> bool:
    """True when `path` has a video suffix (.mp4, .avi, .mov, .mkv)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _check_video_suffix(path) -> Path:
    path = Path(path)
    if not is_video_path(path):
        raise ValueError(f"Cannot write a video to '{path}': use one of the suffixes {list(VIDEO_SUFFIXES)}.")
    return path


def _open_writer(path, fps: float, frame_size: tuple[int, int]):
    """A cv2.VideoWriter for BGR frames of `frame_size` (width, height)."""
    import cv2

    path = _check_video_suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*_FOURCC[path.suffix.lower()]), float(fps), frame_size)
    if not writer.isOpened():
        raise OSError(f"Could not open '{path}' for writing a video. Check that its folder is writable.")
    return writer


def write_test_video(path: str | os.PathLike, frames: int = 30) -> Path:
    """Write a 320x240, 15 fps clip of Grace Hopper's face moving and bobbing, cut at the fixed
    `faces.SAMPLE_FACE_BOX` so every detector finds it (for tests and machines without a webcam)."""
    import cv2

    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}.")
    width, height, side = 320, 240, 110
    photo = faces.load_image(faces.sample_photo_path())
    x, y, box_width, box_height = faces.SAMPLE_FACE_BOX
    pad = box_width // 6  # some hair and chin, so the detectors see a whole head
    face = cv2.resize(photo[y - pad : y + box_height + pad, x - pad : x + box_width + pad], (side, side),
                      interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    background = np.stack([60 + 80 * xx / width, 90 + 40 * yy / height, 140 - 60 * xx / width], axis=-1)
    background += np.random.default_rng(0).normal(0, 6, size=background.shape)
    background = np.clip(background, 0, 255).astype(np.uint8)
    writer = _open_writer(path, 15.0, (width, height))
    try:
        for index in range(frames):
            progress = index / max(1, frames - 1)
            left = int(round(progress * (width - side)))
            top = int(round((height - side) / 2 * (1 + 0.5 * np.sin(2 * np.pi * progress))))
            frame = background.copy()
            frame[top : top + side, left : left + side] = face
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return Path(path)


def _open_capture(source):
    """cv2.VideoCapture of a webcam index or a video file, or a clear error."""
    import cv2

    if isinstance(source, str) and source.isdigit():
        source = int(source)
    if isinstance(source, int):
        capture, where = cv2.VideoCapture(source), f"webcam {source}"
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"No video file at '{path}'. Pass a video file or a webcam index such as 0.")
        capture, where = cv2.VideoCapture(str(path)), f"'{path}'"
    if not capture.isOpened():
        capture.release()
        raise ValueError(
            f"OpenCV cannot open {where} as a video. Check that the file is a readable video "
            "(.mp4, .avi, .mov, .mkv) or that the webcam exists and is not in use."
        )
    width, height = (int(capture.get(prop)) for prop in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT))
    if width * height > data.MAX_PIXELS:  # refused before the first frame is decoded, as photos are
        capture.release()
        raise ValueError(f"{where} has frames of {width}x{height} pixels, over the {data.MAX_PIXELS // 10**6} megapixels "
                         "fer_utils analyses; downscale it first, e.g. `ffmpeg -i IN -vf scale=1920:-2 OUT.mp4`.")
    return capture


def _jupyter_display():
    """A function that shows a frame in one Jupyter output, updated in place."""
    try:
        from IPython.display import Image, display
    except ImportError as error:
        raise ValueError("VideoOptions(show=True) needs IPython (run it inside Jupyter), or leave show=False.") from error
    import cv2

    handle = display(None, display_id=True)

    def show(frame_rgb):
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))
        if ok and handle is not None:
            handle.update(Image(data=encoded.tobytes()))

    return show


def run_video(
    model,
    source,
    out_path: str | os.PathLike | None = None,
    options: VideoOptions | None = None,
    on_frame: Callable[[int, np.ndarray, list[faces.FacePrediction]], Any] | None = None,
) -> dict:
    """Detect, classify and draw the faces frame by frame in a webcam (`source` an index, 0 the default) or a
    video file; `out_path` also writes the annotated video. `on_frame(index, annotated_rgb, predictions)`
    runs after each frame; returning False stops, as does Ctrl+C. Returns a dict: `frames`,
    `analysed_frames`, `faces`, `frames_with_faces`, `seconds`, `fps` (end to end, after one warm-up),
    `detector` and `out_path`."""
    import cv2

    options = options if options is not None else VideoOptions()
    if out_path is not None:
        _check_video_suffix(out_path)  # fail before opening anything
    run = load_model(model, options.class_names)
    detector = faces.resolve_detector(options.detector, live=True)
    smoother = faces.LabelSmoother(run.class_names)  # steady labels: a face's probabilities averaged over frames
    capture = _open_capture(source)
    display_frame = _jupyter_display() if options.show else None
    # Building the model's and the detector's functions (seconds for MTCNN) is not counted in fps.
    models.predict(run.model, np.zeros((1, faces.FACE_SIZE, faces.FACE_SIZE, 1), np.uint8), compiled=True)
    faces.detect_faces(np.zeros((2 * faces.FACE_SIZE, 2 * faces.FACE_SIZE, 3), np.uint8), detector=detector)

    writer = None
    stats = {"frames": 0, "analysed_frames": 0, "faces": 0, "frames_with_faces": 0, "detector": detector}
    predictions: list[faces.FacePrediction] = []
    start = time.perf_counter()
    try:
        while options.max_frames is None or stats["frames"] < options.max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            if stats["frames"] % options.every_n == 0:
                predictions = smoother.update(faces.predict_faces(run, frame, min_size=options.min_size, detector=detector))
                stats["analysed_frames"] += 1
                stats["faces"] += len(predictions)
                stats["frames_with_faces"] += bool(predictions)
            annotated = faces.annotate(frame, predictions)
            if out_path is not None:
                if writer is None:
                    fps = capture.get(cv2.CAP_PROP_FPS)
                    writer = _open_writer(out_path, fps if 0 < fps < 1000 else 25.0, annotated.shape[1::-1])
                writer.write(cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR))
            if display_frame is not None:
                display_frame(annotated)
            stats["frames"] += 1
            if on_frame is not None and on_frame(stats["frames"] - 1, annotated, predictions) is False:
                break
    except KeyboardInterrupt:
        pass
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    stats["seconds"] = time.perf_counter() - start
    stats["fps"] = stats["frames"] / stats["seconds"] if stats["frames"] and stats["seconds"] > 0 else 0.0
    stats["out_path"] = str(out_path) if writer is not None else None
    return stats
