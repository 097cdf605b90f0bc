"""Faces in video: a frame loop over a webcam or a video file, and the files it reads and writes.

`run_video` reads frames, detects and classifies the faces in each (with `fer_utils.faces`), draws
them, and can show the annotated frames live in Jupyter and write them as a video. Its settings
that callers rarely change are grouped in `VideoOptions`. `write_test_video` synthesises a short
clip of a real face moving across the frame, for tests and machines without a webcam.

Frames are RGB throughout, as in `fer_utils.faces`; OpenCV's BGR order only appears where frames
are read from and written to files.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from fer_utils import faces
from fer_utils.loading import load_model

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")


@dataclasses.dataclass(frozen=True)
class VideoOptions:
    """The settings of `run_video` that callers rarely change.

    Attributes:
        class_names: the model's class order (defaults as in `faces.predict_faces`).
        max_frames: stop after this many frames (None: the whole file, or until interrupted).
        every_n: analyse every n-th frame and reuse its faces on the frames in between (faster).
        show: show the annotated frames live in Jupyter (updates one output in place).
        min_size, scale_factor, min_neighbors, detector: see `faces.detect_faces`.
    """

    class_names: Sequence[str] | None = None
    max_frames: int | None = None
    every_n: int = 1
    show: bool = False
    min_size: int = 48
    scale_factor: float = 1.1
    min_neighbors: int = 5
    detector: str = "auto"

    def __post_init__(self):
        if self.every_n < 1:
            raise ValueError(f"every_n must be 1 or more, got {self.every_n}.")
        if self.max_frames is not None and self.max_frames < 0:
            raise ValueError(f"max_frames must be 0 or more (or None for no limit), got {self.max_frames}.")


def _fourcc(path: Path) -> int:
    import cv2

    codes = {".avi": "MJPG", ".mp4": "mp4v", ".mov": "mp4v", ".mkv": "mp4v"}
    if path.suffix.lower() not in codes:
        raise ValueError(f"Cannot write a video to '{path}': use one of the suffixes {list(codes)}.")
    return cv2.VideoWriter_fourcc(*codes[path.suffix.lower()])


def _open_writer(path, fps: float, frame_size: tuple[int, int]):
    """Open a cv2.VideoWriter for BGR frames of `frame_size` (width, height)."""
    import cv2

    path = Path(path)
    fourcc = _fourcc(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), fourcc, float(fps), frame_size)
    if not writer.isOpened():
        raise OSError(f"Could not open '{path}' for writing a video. Check that its folder is writable.")
    return writer


def write_test_video(
    path: str | os.PathLike,
    frames: int = 30,
    size: tuple[int, int] = (320, 240),
    fps: float = 15.0,
    face_size: int = 110,
    seed: int = 0,
) -> Path:
    """Synthesise a small video of a real face moving across a textured background.

    The face is Grace Hopper's, cut from matplotlib's sample photo at the fixed `faces.SAMPLE_FACE_BOX`
    (no detector involved), so every detector of `faces.DETECTORS` finds it; it travels left to right
    and bobs up and down. Useful for tests and when no webcam exists.

    Args:
        path: the video file to write (.mp4, .avi, .mov or .mkv).
        frames: number of frames.
        size: frame (width, height) in pixels.
        fps: frames per second stored in the file.
        face_size: side of the pasted face in pixels (it must fit in the frame).
        seed: seed of the background noise.

    Returns:
        `path`.
    """
    import cv2

    width, height = (int(value) for value in size)
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}.")
    if not 24 <= face_size <= min(width, height):
        raise ValueError(f"face_size must lie between 24 and the frame's shorter side {min(width, height)}, got {face_size}.")
    photo = faces.load_image(faces.sample_photo_path())
    x, y, box_width, box_height = faces.SAMPLE_FACE_BOX
    # Keep some hair and chin around the face so the detectors see a whole head.
    pad = box_width // 6
    face = photo[max(0, y - pad) : y + box_height + pad, max(0, x - pad) : x + box_width + pad]
    face = cv2.resize(face, (face_size, face_size), interpolation=cv2.INTER_AREA)

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    background = np.stack([60 + 80 * xx / width, 90 + 40 * yy / height, 140 - 60 * xx / width], axis=-1)
    background += rng.normal(0, 6, size=background.shape)
    background = np.clip(background, 0, 255).astype(np.uint8)

    path = Path(path)
    writer = _open_writer(path, fps, (width, height))
    try:
        for index in range(frames):
            progress = index / max(1, frames - 1)
            left = int(round(progress * (width - face_size)))
            top = int(round((height - face_size) / 2 * (1 + 0.5 * np.sin(2 * np.pi * progress))))
            frame = background.copy()
            frame[top : top + face_size, left : left + face_size] = face
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


def _open_capture(source):
    """Open a webcam index or a video file with cv2.VideoCapture; raise a clear error if it fails."""
    import cv2

    if isinstance(source, str) and source.isdigit():
        source = int(source)
    if isinstance(source, int):
        capture = cv2.VideoCapture(source)
        where = f"webcam {source}"
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"No video file at '{path}'. Pass a video file or a webcam index such as 0.")
        capture = cv2.VideoCapture(str(path))
        where = f"'{path}'"
    if not capture.isOpened():
        capture.release()
        raise ValueError(
            f"OpenCV cannot open {where} as a video. Check that the file is a readable video "
            "(.mp4, .avi, .mov, .mkv) or that the webcam exists and is not in use."
        )
    return capture, where


def _jupyter_display():
    """A display handle that shows frames in place in Jupyter (`VideoOptions(show=True)`)."""
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
    """Detect and classify faces frame by frame in a webcam stream or a video file.

    Args:
        model: a Keras model, a `fer_utils.runs.Run`, or a run folder / .keras path.
        source: a webcam index (0 is the default camera) or a video file path.
        out_path: also write the annotated video here (.mp4, .avi, .mov or .mkv).
        options: the loop's other settings (`VideoOptions()` when None): class names, frame limit,
            analysing every n-th frame, live display and the detector's settings.
        on_frame: called as `on_frame(index, annotated_rgb_frame, predictions)` after each frame;
            returning False stops the loop.

    Interrupting the kernel (Ctrl+C) ends the loop cleanly and still returns the statistics.

    Returns:
        A dict with `frames` (frames read and annotated), `analysed_frames`, `faces` (faces found on
        the analysed frames), `frames_with_faces`, `seconds`, `fps`, `detector` (the detector that
        ran) and `out_path`. `fps` is measured end to end: reading, detection, prediction, drawing
        and writing, after one warm-up call of the model and of the detector.
    """
    import cv2

    options = options if options is not None else VideoOptions()
    if out_path is not None:
        _fourcc(Path(out_path))  # Fail on a bad suffix before opening anything.
    loaded = load_model(model, options.class_names)
    model, class_names = loaded.model, loaded.class_names
    detector = faces.resolve_detector(options.detector)
    capture, _ = _open_capture(source)
    display_frame = _jupyter_display() if options.show else None
    # One warm-up call each, so that building the model's predict function and the detector's
    # networks (seconds for MTCNN) is not counted in fps.
    faces.predict_batch(model, np.zeros((1, faces.FACE_SIZE, faces.FACE_SIZE, 1), dtype=np.uint8))
    faces.detect_faces(np.zeros((2 * faces.FACE_SIZE, 2 * faces.FACE_SIZE, 3), dtype=np.uint8), detector=detector)

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
                predictions = faces.predict_faces(
                    model, frame, class_names, min_size=options.min_size, scale_factor=options.scale_factor,
                    min_neighbors=options.min_neighbors, detector=detector,
                )
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
            index = stats["frames"]
            stats["frames"] += 1
            if on_frame is not None and on_frame(index, annotated, predictions) is False:
                break
    except KeyboardInterrupt:
        pass
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    seconds = time.perf_counter() - start
    stats["seconds"] = seconds
    stats["fps"] = stats["frames"] / seconds if stats["frames"] and seconds > 0 else 0.0
    stats["out_path"] = str(out_path) if writer is not None else None
    return stats


def is_video_path(path: str | os.PathLike) -> bool:
    """True when `path` has a video suffix (.mp4, .avi, .mov, .mkv)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES
