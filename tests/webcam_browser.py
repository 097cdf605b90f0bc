"""A real browser in front of the webcam widget: Voila serves it, headless Chromium shows it.

Used by tests/test_webcam_browser.py and benchmarks/bench_webcam.py. Nothing is downloaded:

- the camera is Chromium's fake capture device, fed from a YUV4MPEG2 (.y4m) file made here from
  matplotlib's sample photo of a real face (`write_face_y4m`);
- Voila executes a two-cell notebook that builds `fer_utils.webcam.webcam_view` and renders the
  widget with its own widget manager, so the browser needs no clicks (JupyterLab would need its
  UI driven to run a cell);
- Playwright drives the system's Chromium (`executable_path`), never a browser of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
FAKE_CAMERA_FLAGS = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")


def chromium_path() -> str | None:
    """The system's Chromium (`$FER_CHROMIUM` first), or None."""
    for candidate in (os.environ.get("FER_CHROMIUM"), *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def write_y4m(path: Path, frames_rgb, fps: int = 25) -> Path:
    """Write RGB uint8 frames (all the same even width and height) as a YUV4MPEG2 I420 video."""
    import cv2

    frames_rgb = list(frames_rgb)
    height, width = frames_rgb[0].shape[:2]
    if width % 2 or height % 2:
        raise ValueError(f"I420 needs an even width and height, got {width}x{height}.")
    with open(path, "wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        for frame in frames_rgb:
            # OpenCV's I420 image is exactly the Y plane, then U, then V, each row after row.
            handle.write(b"FRAME\n")
            handle.write(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


def face_frames(count: int = 40, width: int = 640, height: int = 480) -> list[np.ndarray]:
    """The sample photo, scaled to the frame height, drifting a few pixels left and right on grey."""
    import cv2

    from fer_utils import faces

    photo = faces.load_image(faces.sample_photo_path())
    scale = height / photo.shape[0]
    photo = cv2.resize(photo, (int(photo.shape[1] * scale), height), interpolation=cv2.INTER_AREA)
    frames = []
    for index in range(count):
        frame = np.full((height, width, 3), 128, np.uint8)
        left = (width - photo.shape[1]) // 2 + int(round(20 * np.sin(2 * np.pi * index / count)))
        frame[:, left : left + photo.shape[1]] = photo
        frames.append(frame)
    return frames


def write_face_y4m(path: Path, count: int = 40) -> Path:
    """A .y4m clip of a real face for Chromium's fake camera."""
    return write_y4m(path, face_frames(count))


def write_widget_notebook(path: Path, model_path: Path, detector: str = "auto", max_width: int = 320) -> Path:
    """A notebook whose last cell shows the webcam widget for the model at `model_path`."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [
        nbformat.v4.new_code_cell("from fer_utils import webcam"),
        nbformat.v4.new_code_cell(
            f"view = webcam.webcam_view({str(model_path)!r}, detector={detector!r}, max_width={max_width})\nview"
        ),
    ]
    nbformat.write(notebook, str(path))
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def voila_server(notebook: Path, timeout: float = 60.0):
    """Serve `notebook` with Voila on loopback; yields its URL. The kernel sees this PYTHONPATH."""
    port = _free_port()
    log = open(notebook.with_suffix(".voila.log"), "wb")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(
        [sys.executable, "-m", "voila", notebook.name, "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
         "--token=", "--show_tracebacks=True", "--Voila.log_level=WARN"],
        cwd=notebook.parent, stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"Voila exited with {process.returncode}: {_tail(log.name)}")
            try:
                # Only the port: a GET of the page would make Voila execute the notebook.
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Voila did not answer on {url} within {timeout:.0f} s: {_tail(log.name)}")
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _tail(path, characters: int = 3000) -> str:
    return Path(path).read_text(errors="replace")[-characters:]


def voila_log(notebook: Path) -> str:
    """The end of the Voila server's log, for failure messages."""
    path = notebook.with_suffix(".voila.log")
    return _tail(path) if path.is_file() else ""


@contextlib.contextmanager
def fake_camera_page(y4m: Path, executable: str):
    """A Playwright page of the system Chromium whose camera plays `y4m`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=[*FAKE_CAMERA_FLAGS, f"--use-file-for-fake-video-capture={y4m}", "--no-sandbox"],
        )
        try:
            context = browser.new_context()
            context.grant_permissions(["camera"])
            yield context.new_page()
        finally:
            browser.close()


# What the widget's root element says about the loop, read in one go.
READ_STATE = """() => {
  const root = document.querySelector('.fer-webcam');
  if (!root) return null;
  const canvas = root.querySelector('canvas');
  let green = 0;
  if (canvas && canvas.width && canvas.height) {
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 0; i < pixels.length; i += 4) {
      if (pixels[i + 3] > 0 && pixels[i + 1] > 180 && pixels[i] < 100) green += 1;
    }
  }
  return {...root.dataset, overlayPixels: green, status: root.innerText};
}"""


def run_widget(page, url: str, results: int, timeout_s: float = 60.0) -> dict:
    """Open the widget page and wait until the browser has `results` answers from the kernel.

    Returns the root element's data attributes (strings), `overlayPixels` (box-coloured pixels on
    the overlay canvas) and `seconds` from the first answer to the last.
    """
    page.goto(url, timeout=timeout_s * 1000)
    page.wait_for_function(
        "() => { const r = document.querySelector('.fer-webcam'); return r && Number(r.dataset.results || 0) >= 1 }",
        timeout=timeout_s * 1000,
    )
    first = time.perf_counter()
    page.wait_for_function(
        f"() => Number(document.querySelector('.fer-webcam').dataset.results || 0) >= {int(results)}",
        timeout=timeout_s * 1000,
    )
    state = page.evaluate(READ_STATE)
    state["seconds"] = time.perf_counter() - first
    return state


def describe(state) -> str:
    return json.dumps(state, indent=1, default=str)
