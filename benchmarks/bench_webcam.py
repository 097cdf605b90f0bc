"""Benchmark 6: frames per second of the live webcam widget, end to end, in a real browser.

The set-up of tests/test_webcam_browser.py (tests/webcam_browser.py): Voila serves a notebook with
`fer_utils.webcam.webcam_view`, headless Chromium's fake camera plays a 640x480 clip of
matplotlib's sample photo of a real face, and each frame goes the whole way: canvas -> JPEG ->
widget message -> kernel (decode, detect, crop, classify) -> reply -> boxes drawn on the page.
One frame is in flight at a time, so the rate is the reciprocal of that round trip.

Measured per detector, after the first answer (the warm-up is not counted): `fps` is the answers
per second over --frames answers, `page fps` what the widget shows (its last 10 round trips).
The model is a random-init small_cnn (the classifier costs the same whatever its weights) unless
--model names a run folder, a .keras file or `builtin` (the shipped model). The 1-minute load average is printed, since other
processes may share the CPU.

Side by side in one run: the default live detector ("auto": BlazeFace where it can run) and MTCNN, and
the ratio of their rates.

    python benchmarks/bench_webcam.py [--frames 30] [--detector auto mtcnn] [--max-width 320] [--model builtin]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import webcam_browser  # noqa: E402  (tests/webcam_browser.py)


def measure(folder: Path, model_path: Path, detector: str, frames: int, max_width: int) -> dict:
    y4m = folder / "face.y4m"
    if not y4m.is_file():
        webcam_browser.write_face_y4m(y4m)
    notebook = webcam_browser.write_widget_notebook(
        folder / f"webcam_{detector}.ipynb", model_path, detector=detector, max_width=max_width
    )
    with webcam_browser.voila_server(notebook) as url, webcam_browser.fake_camera_page(y4m, chromium()) as page:
        state = webcam_browser.run_widget(page, url, frames + 1, timeout_s=300)
    answers = int(state["results"]) - 1
    return {
        "detector": detector,
        "answers": answers,
        "fps": answers / state["seconds"],
        "page fps": float(state["fps"]),
        "faces in last frame": int(state["faces"]),
    }


def chromium() -> str:
    path = webcam_browser.chromium_path()
    if path is None:
        raise SystemExit("No Chromium at /usr/bin/chromium: apt-get install -y chromium (or set FER_CHROMIUM).")
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30, help="answers to time after the first one")
    parser.add_argument("--detector", nargs="+", default=["auto", "mtcnn"], help="detectors to measure")
    parser.add_argument("--max-width", type=int, default=320, help="width the browser scales frames to")
    parser.add_argument("--model", help="a run folder, .keras file or builtin (default: a random-init small_cnn)")
    args = parser.parse_args(argv)

    from fer_utils import faces

    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        model_path = Path(args.model) if args.model else folder / "model.keras"
        if not args.model:
            from fer_utils import models

            models.build_model("small_cnn", weights=None, seed=0).save(model_path)
        print(f"{args.frames} frames of 640x480, sent at {args.max_width} px wide; "
              f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        rates = {}
        for detector in args.detector:
            available = detector == "auto" or detector in faces.available_detectors()
            if not available:
                print(f"{detector}: not available here")
                continue
            row = measure(folder, model_path, detector, args.frames, args.max_width)
            name = faces.resolve_detector(detector, live=True)
            rates[detector] = row["fps"]
            print(f"{detector} = {name:>9}: {row['fps']:.2f} fps end to end ({row['answers']} answers; "
                  f"page shows {row['page fps']:.2f}); faces in the last frame: {row['faces in last frame']}; "
                  f"load average {os.getloadavg()[0]:.2f}")
        if len(rates) > 1:
            first, *others = rates
            for other in others:
                print(f"{first} / {other}: {rates[first] / rates[other]:.1f}x")


if __name__ == "__main__":
    main()
