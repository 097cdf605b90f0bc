"""Live webcam in the notebook: the browser captures, the kernel detects and classifies.

`cv2.VideoCapture(0)` would open a camera of the kernel's machine (on Colab, a server). `live_view`'s
`anywidget` front end (`static/webcam.js`) opens the browser's camera instead and sends one small JPEG
at a time; the kernel answers with boxes and labels (`process_frame`) before the next frame, so a slow
kernel is never flooded. Where no camera or widget can run, `live_view` says why and returns None.
"""

from __future__ import annotations

import functools
import importlib.util
import time
from pathlib import Path

import numpy as np

from fer_utils import environment, faces, models
from fer_utils.loading import load_model

FRONT_END = Path(__file__).resolve().parent / "static" / "webcam.js"


def process_frame(jpeg_bytes: bytes, model, class_names=None, detector: str = "auto", min_size: int = 48,
                  smoother: faces.LabelSmoother | None = None) -> dict:
    """Decode one JPEG (or PNG) frame and classify its faces for the browser. `model`: anything
    `loading.load_model` takes (load a path once, outside a loop); `smoother` steadies the labels over the
    frames. Returns a JSON-ready dict: `width`, `height`, `faces` (left to right: `box`, `label`,
    `confidence`, `probabilities`), `detector`, `seconds`."""
    import cv2

    start = time.perf_counter()
    buffer = np.frombuffer(bytes(jpeg_bytes), dtype=np.uint8)
    bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if bgr is None:
        raise ValueError(f"Could not decode the {buffer.size}-byte frame as an image; "
                         "the webcam front end sends JPEG bytes.")
    run = load_model(model, class_names)
    frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    detector = faces.resolve_detector(detector, live=True)
    predictions = faces.predict_faces(run, frame, min_size=min_size, detector=detector)
    if smoother is not None:
        predictions = smoother.update(predictions)
    return {
        "width": int(frame.shape[1]),
        "height": int(frame.shape[0]),
        "faces": [
            {
                "box": list(p.box),
                "label": p.label,
                "confidence": p.confidence,
                "probabilities": {name: float(value) for name, value in zip(run.class_names, p.probabilities)},
            }
            for p in predictions
        ],
        "detector": detector,
        "seconds": time.perf_counter() - start,
    }


def unavailable_reason() -> str | None:
    """Why the live webcam cannot run in this process, or None when it can."""
    if environment.smoke_mode():
        return f"{environment.SMOKE_VARIABLE} is set (a headless run has no camera)"
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


@functools.cache
def _widget_class():
    """The widget class, defined on first use so that importing this module needs no anywidget."""
    import anywidget
    import traitlets

    class WebcamView(anywidget.AnyWidget):
        """Browser camera in, faces with labels drawn over it; see the module docstring."""

        _esm = FRONT_END
        # Front-end settings: frames are downscaled to max_width. 320 px keeps a face at arm's length over
        # the 48 px the classifier needs, BlazeFace sees frames at 192 px anyway, and a smaller JPEG
        # travels, encodes and decodes faster.
        max_width = traitlets.Int(320).tag(sync=True)
        jpeg_quality = traitlets.Float(0.75).tag(sync=True)
        autostart = traitlets.Bool(True).tag(sync=True)
        # Counted in the kernel, readable from Python while the camera runs.
        frames = traitlets.Int(0).tag(sync=True)
        faces_found = traitlets.Int(0).tag(sync=True)
        last_labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
        detector = traitlets.Unicode("").tag(sync=True)
        error = traitlets.Unicode("").tag(sync=True)
        # Set by the browser: its end-to-end frames per second and its state.
        fps = traitlets.Float(0.0).tag(sync=True)
        state = traitlets.Unicode("").tag(sync=True)

        def __init__(self, model, class_names=None, detector: str = "auto", min_size: int = 48, **kwargs):
            super().__init__(**kwargs)
            self._run = load_model(model, class_names)
            self._min_size = min_size
            self.detector = faces.resolve_detector(detector, live=True)
            self._smoother = faces.LabelSmoother(self._run.class_names)
            self.on_msg(self._on_frame)

        def _on_frame(self, _widget, content, buffers):
            if not isinstance(content, dict) or content.get("type") != "frame" or not buffers:
                return
            reply = {"type": "result", "id": content.get("id")}
            try:
                result = process_frame(buffers[0], self._run, detector=self.detector, min_size=self._min_size,
                                       smoother=self._smoother)
            except Exception as error:  # noqa: BLE001 - shown on the page; the loop goes on.
                self.error = reply["error"] = f"{type(error).__name__}: {error}"
            else:
                reply.update(result)
                with self.hold_sync():  # the three counters travel to the page as one message, not three
                    self.frames += 1
                    self.faces_found += len(result["faces"])
                    self.last_labels = [face["label"] for face in result["faces"]]
            self.send(reply)

    return WebcamView


def webcam_view(model, class_names=None, detector: str = "auto", min_size: int = 48, warm_up: bool = True, **settings):
    """The webcam widget without `live_view`'s checks; `warm_up` builds the detector and model first (seconds
    for MTCNN), so the first frame is not slow; `settings` are widget traits (`max_width`, `jpeg_quality`,
    `autostart`)."""
    widget = _widget_class()(model, class_names, detector=detector, min_size=min_size, **settings)
    if warm_up:
        faces.detect_faces(np.zeros((2 * faces.FACE_SIZE, 2 * faces.FACE_SIZE, 3), np.uint8), detector=widget.detector)
        models.predict(widget._run.model, np.zeros((1, faces.FACE_SIZE, faces.FACE_SIZE, 1), np.uint8), compiled=True)
    return widget


def live_view(model, class_names=None, detector: str = "auto", min_size: int = 48, **settings):
    """Show the browser's webcam with live expression labels and return the widget, or print in one line why
    it cannot run (Kaggle, FER_SMOKE, no anywidget, outside Jupyter) and return None."""
    reason = unavailable_reason()
    if reason is not None:
        print(f"Live webcam unavailable: {reason}; use a video file or a photo instead.")
        return None
    if environment.platform_name() == "colab":  # Colab renders third-party widgets only with this on
        from google.colab import output

        output.enable_custom_widget_manager()
    return webcam_view(model, class_names, detector=detector, min_size=min_size, **settings)
