"""Live webcam in the notebook: the browser captures, the kernel detects and classifies.

`cv2.VideoCapture(0)` opens a camera of the machine the *kernel* runs on, which on Colab is a
server in a data centre. `live_view` instead shows an `anywidget` widget whose front end
(`fer_utils/static/webcam.js`) opens the camera of the *browser* (getUserMedia), so it works
wherever the notebook page runs in a browser: local JupyterLab, Colab (not VS Code, whose notebook
view gives outputs no camera).

The loop, one frame in flight at a time so a slow kernel is never flooded:

1. the browser draws the current camera picture, downscaled to `max_width` pixels, into a JPEG and
   sends it to the kernel as a binary buffer of a custom widget message;
2. the kernel decodes it and runs `process_frame`: `fer_utils.faces` detects and classifies the
   faces; it replies with their boxes, labels and probabilities;
3. the browser draws the boxes and labels over the live picture, updates the frames per second
   (measured end to end: capture, encoding, transfer, detection, classification, reply) and sends
   the next frame.

Where no camera or widget support exists (Kaggle has no camera, CI runs headless with
`FER_SMOKE=1`, `anywidget` missing, no Jupyter kernel) `live_view` says why in one line and returns
None, so a notebook can fall back to a video file or a photo.
"""

from __future__ import annotations

import functools
import importlib.util
import time
from pathlib import Path

import numpy as np

from fer_utils import environment, faces
from fer_utils.loading import load_model

FRONT_END = Path(__file__).resolve().parent / "static" / "webcam.js"
# Browser-side defaults: frames are downscaled to this width before encoding (the detectors find
# faces of 48 px and more, and a smaller JPEG travels and decodes faster) at this JPEG quality.
DEFAULT_MAX_WIDTH = 480
DEFAULT_JPEG_QUALITY = 0.8
FALLBACK_HINT = "use a video file (video.run_video) or a photo instead."


def process_frame(
    jpeg_bytes: bytes,
    model,
    class_names=None,
    detector: str = "auto",
    min_size: int = 48,
) -> dict:
    """Decode one JPEG (or PNG) frame, find and classify its faces, and describe them for the browser.

    Args:
        jpeg_bytes: the encoded image, as sent by the front end.
        model: a Keras model or a `fer_utils.runs.Run` (a run folder / .keras path works too, but
            is loaded on every call: load it once with `loading.load_model` in a loop).
        class_names: the model's class order (defaults as in `faces.predict_faces`).
        detector, min_size: see `faces.detect_faces`.

    Returns:
        A JSON-ready dict: `width` and `height` of the decoded frame, `faces` (one dict per face,
        left to right, with `box` [x, y, w, h] in frame pixels, `label`, `confidence` and
        `probabilities` {class name: probability}), `detector` and `seconds` (the kernel's time).
    """
    import cv2

    start = time.perf_counter()
    buffer = np.frombuffer(bytes(jpeg_bytes), dtype=np.uint8)
    bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if bgr is None:
        raise ValueError(
            f"Could not decode the {buffer.size}-byte frame as an image; the webcam front end sends JPEG bytes."
        )
    loaded = load_model(model, class_names)
    frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    detector = faces.resolve_detector(detector)
    predictions = faces.predict_faces(
        loaded.model, frame, loaded.class_names, min_size=min_size, detector=detector
    )
    return {
        "width": int(frame.shape[1]),
        "height": int(frame.shape[0]),
        "faces": [
            {
                "box": [int(value) for value in prediction.box],
                "label": prediction.label,
                "confidence": float(prediction.confidence),
                "probabilities": {
                    name: float(p) for name, p in zip(loaded.class_names, prediction.probabilities)
                },
            }
            for prediction in predictions
        ],
        "detector": detector,
        "seconds": time.perf_counter() - start,
    }


def unavailable_reason() -> str | None:
    """Why the live webcam cannot run in this process, or None when it can."""
    from fer_utils.environment import SMOKE_VARIABLE, smoke_mode

    if smoke_mode():
        return f"{SMOKE_VARIABLE} is set (a headless run has no camera and no browser)"
    if environment.platform_name() == "kaggle":
        return "Kaggle notebooks have no access to your camera"
    if importlib.util.find_spec("anywidget") is None:
        return "the anywidget package is missing (pip install anywidget, then restart the kernel)"
    try:
        from IPython import get_ipython
    except ImportError:
        return "IPython is missing, so this is not a Jupyter kernel"
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return "this is not a Jupyter kernel (run it in a notebook: JupyterLab or Colab)"
    return None


def _enable_colab_widgets() -> None:
    """Colab renders third-party widgets only with its custom widget manager switched on."""
    if environment.platform_name() == "colab":
        from google.colab import output

        output.enable_custom_widget_manager()


@functools.cache
def _widget_class():
    """The widget class, defined on first use so that importing this module needs no anywidget."""
    import anywidget
    import traitlets

    class WebcamView(anywidget.AnyWidget):
        """Browser camera in, faces with labels drawn over it; see the module docstring."""

        _esm = FRONT_END
        # Front-end settings.
        max_width = traitlets.Int(DEFAULT_MAX_WIDTH).tag(sync=True)
        jpeg_quality = traitlets.Float(DEFAULT_JPEG_QUALITY).tag(sync=True)
        autostart = traitlets.Bool(True).tag(sync=True)
        # Kernel-side statistics, readable from Python while the camera runs.
        frames = traitlets.Int(0).tag(sync=True)
        faces_found = traitlets.Int(0).tag(sync=True)
        frames_with_faces = traitlets.Int(0).tag(sync=True)
        last_labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
        kernel_ms = traitlets.Float(0.0).tag(sync=True)
        detector = traitlets.Unicode("").tag(sync=True)
        error = traitlets.Unicode("").tag(sync=True)
        # Reported by the browser: its end-to-end frames per second and its state.
        fps = traitlets.Float(0.0).tag(sync=True)
        state = traitlets.Unicode("").tag(sync=True)

        def __init__(self, model, class_names=None, detector: str = "auto", min_size: int = 48, **kwargs):
            super().__init__(**kwargs)
            loaded = load_model(model, class_names)
            self._model, self._class_names = loaded.model, loaded.class_names
            self._min_size = min_size
            self.detector = faces.resolve_detector(detector)
            self.on_msg(self._on_frame)

        def _on_frame(self, _widget, content, buffers):
            if not isinstance(content, dict) or content.get("type") != "frame" or not buffers:
                return
            reply = {"type": "result", "id": content.get("id")}
            try:
                result = process_frame(
                    buffers[0], self._model, self._class_names, detector=self.detector, min_size=self._min_size
                )
            except Exception as error:  # noqa: BLE001 - reported to the page; the loop goes on.
                self.error = f"{type(error).__name__}: {error}"
                reply["error"] = self.error
            else:
                reply.update(result)
                self.frames += 1
                self.faces_found += len(result["faces"])
                self.frames_with_faces += bool(result["faces"])
                self.last_labels = [face["label"] for face in result["faces"]]
                # An exponential moving average, in milliseconds, that follows the last few frames.
                milliseconds = 1000 * result["seconds"]
                self.kernel_ms = milliseconds if self.frames == 1 else 0.8 * self.kernel_ms + 0.2 * milliseconds
            self.send(reply)

    return WebcamView


def webcam_view(model, class_names=None, detector: str = "auto", min_size: int = 48, warm_up: bool = True, **settings):
    """The webcam widget itself, without the availability checks of `live_view`.

    Args:
        model: a Keras model, a `fer_utils.runs.Run`, or a run folder / .keras path.
        class_names: the model's class order (defaults as in `faces.predict_faces`).
        detector, min_size: see `faces.detect_faces`.
        warm_up: run the model and the detector once on a blank picture first, so building them
            (seconds for MTCNN) does not stall the first camera frame.
        settings: widget traits such as `max_width`, `jpeg_quality` or `autostart`.
    """
    widget = _widget_class()(model, class_names, detector=detector, min_size=min_size, **settings)
    if warm_up:
        import cv2

        ok, blank = cv2.imencode(".jpg", np.zeros((2 * faces.FACE_SIZE, 2 * faces.FACE_SIZE, 3), np.uint8))
        process_frame(blank.tobytes(), widget._model, widget._class_names, detector=widget.detector)
        faces.predict_faces(
            widget._model, np.zeros((faces.FACE_SIZE, faces.FACE_SIZE), np.uint8), widget._class_names,
            boxes=[(0, 0, faces.FACE_SIZE, faces.FACE_SIZE)],
        )
    return widget


def live_view(model, class_names=None, detector: str = "auto", min_size: int = 48, **settings):
    """Show the browser's webcam with live expression labels, or say in one line why it cannot run.

    Returns:
        The widget (display it, or leave it as a cell's last expression), or None after printing
        the reason where no camera or widget support exists (Kaggle, FER_SMOKE runs, anywidget
        missing, outside Jupyter).
    """
    reason = unavailable_reason()
    if reason is not None:
        print(f"Live webcam unavailable: {reason}; {FALLBACK_HINT}")
        return None
    _enable_colab_widgets()
    return webcam_view(model, class_names, detector=detector, min_size=min_size, **settings)
