"""The demo dataset: procedurally drawn 48x48 grayscale faces of the 7 expressions (no FER2013 image ships),
in FER2013's class proportions and Kaggle's msambare layout, so it goes through the same loader as real data.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fer_utils import CLASS_NAMES, files

# FER2013's training-set counts per class: the demo's class proportions.
FER2013_TRAIN_COUNTS = {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "sad": 4830, "surprise": 3171,
                        "neutral": 4965}
DEFAULT_PER_CLASS = 100
MIN_PER_CLASS = 6
_SCALE = 4  # Faces are drawn at 4x resolution and downsampled, which anti-aliases the strokes.
_CANVAS = 48 * _SCALE

# Expression deltas from the neutral face, in canvas pixels or as multipliers: brows up/down (brow_raise)
# and inner ends up/down (brow_tilt), eye height, mouth corners up/down (mouth_curve), opening (0..1)
# and width, nose wrinkle and one raised mouth corner (asymmetry) for disgust.
_EXPRESSIONS = {
    "neutral": {},
    "happy": {"mouth_curve": 16, "mouth_open": 0.25, "eye_open": -0.25, "mouth_width": 0.15},
    "sad": {"brow_tilt": 12, "mouth_curve": -12, "eye_open": -0.2, "mouth_width": -0.15},
    "angry": {"brow_raise": -6, "brow_tilt": -14, "eye_open": -0.3, "mouth_curve": -4, "mouth_width": -0.2},
    "surprise": {"brow_raise": 14, "eye_open": 0.6, "mouth_open": 1.0, "mouth_width": -0.4},
    "fear": {"brow_raise": 9, "brow_tilt": 9, "eye_open": 0.5, "mouth_open": 0.45, "mouth_curve": -5, "mouth_width": 0.2},
    "disgust": {"brow_tilt": -7, "eye_open": -0.35, "wrinkle": 1.0, "asymmetry": 9, "mouth_curve": -5, "mouth_open": 0.15},
}


def draw_face(expression: str, rng: np.random.Generator) -> np.ndarray:
    """Draw one 48x48 uint8 face showing `expression` with random identity, pose and lighting."""
    import cv2

    if expression not in _EXPRESSIONS:
        raise ValueError(f"Unknown expression '{expression}'; choose one of {list(CLASS_NAMES)}.")
    intensity = rng.uniform(0.3, 1.0)
    params = {key: intensity * value for key, value in _EXPRESSIONS[expression].items()}

    def param(name: str, jitter: float) -> float:
        return params.get(name, 0.0) + rng.normal(0.0, jitter)

    canvas = np.zeros((_CANVAS, _CANVAS), dtype=np.float32)
    # Background: a random level with a random linear gradient.
    yy, xx = np.mgrid[0:_CANVAS, 0:_CANVAS].astype(np.float32) / _CANVAS
    canvas += rng.uniform(20, 140) + rng.uniform(-40, 40) * xx + rng.uniform(-40, 40) * yy

    center_x, center_y = _CANVAS // 2, int(_CANVAS * 0.52)
    face_w, face_h = int(rng.uniform(56, 68)), int(rng.uniform(72, 84))
    skin = rng.uniform(120, 215)
    hair = rng.uniform(10, 90)
    cv2.ellipse(canvas, (center_x, center_y - face_h // 2), (face_w + 4, int(face_h * 0.6)), 0, 180, 360, hair, -1)
    cv2.ellipse(canvas, (center_x, center_y), (face_w, face_h), 0, 0, 360, skin, -1)

    dark = skin * rng.uniform(0.15, 0.4)
    eye_y = center_y - int(face_h * 0.18) + int(rng.normal(0, 2))
    eye_dx = int(face_w * 0.42)
    eye_h = max(2.0, 7.0 * (1.0 + param("eye_open", 0.08)))
    for side in (-1, 1):
        eye_x = center_x + side * eye_dx
        cv2.ellipse(canvas, (eye_x, eye_y), (11, int(eye_h)), 0, 0, 360, min(255.0, skin + 30), -1)
        cv2.circle(canvas, (eye_x, eye_y), max(2, min(5, int(eye_h * 0.7))), dark, -1)
        # Brow: the inner end moves with brow_tilt, both ends with brow_raise.
        brow_y = eye_y - 16 - param("brow_raise", 1.5)
        tilt = param("brow_tilt", 1.5)
        inner = (eye_x - side * 12, int(brow_y - tilt))
        outer = (eye_x + side * 14, int(brow_y + tilt * 0.3))
        cv2.line(canvas, inner, outer, dark, int(rng.uniform(4, 7)))

    # Nose, with wrinkles for disgust.
    nose_y = center_y + int(face_h * 0.12)
    cv2.line(canvas, (center_x, eye_y + 6), (center_x - 4, nose_y), skin * 0.7, 3)
    cv2.line(canvas, (center_x - 8, nose_y), (center_x + 6, nose_y), skin * 0.6, 3)
    wrinkle = param("wrinkle", 0.05)
    if wrinkle > 0.3:
        for offset in (-10, 10):
            cv2.line(canvas, (center_x + offset, eye_y + 4), (center_x + offset // 2, eye_y + 14), skin * 0.55, 2)

    _draw_mouth(canvas, center_x, center_y + int(face_h * 0.48), param, dark, skin)

    # Pose: rotation, scale and shift of the whole face.
    matrix = cv2.getRotationMatrix2D((center_x, center_y), rng.uniform(-12, 12), rng.uniform(0.85, 1.12))
    matrix[:, 2] += rng.uniform(-8, 8, size=2)
    canvas = cv2.warpAffine(canvas, matrix, (_CANVAS, _CANVAS), borderMode=cv2.BORDER_REFLECT)

    # Lighting, resolution, blur and sensor noise.
    canvas = canvas * rng.uniform(0.7, 1.25) + rng.uniform(-25, 25)
    canvas += (rng.uniform(-35, 35) * (xx - 0.5)).astype(np.float32)
    image = cv2.resize(canvas, (48, 48), interpolation=cv2.INTER_AREA)
    sigma = rng.uniform(0.0, 1.0)
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    image += rng.normal(0, rng.uniform(2, 10), size=image.shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def draw_faces(count: int, seed: int = 0) -> np.ndarray:
    """`count` demo faces cycling through the expressions, as a model's input: (count, 48, 48, 1) float32 0..255."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}.")
    rng = np.random.default_rng(seed)
    faces = [draw_face(CLASS_NAMES[index % len(CLASS_NAMES)], rng) for index in range(count)]
    return np.stack(faces).astype(np.float32)[..., None]


def _draw_mouth(canvas, center_x, mouth_y, param, dark, skin):
    import cv2

    half_width = 22.0 * (1.0 + param("mouth_width", 0.05))
    curve = param("mouth_curve", 1.5)
    opening = max(0.0, param("mouth_open", 0.04))
    asymmetry = param("asymmetry", 1.0)
    xs = np.linspace(-1.0, 1.0, 21)
    # Corners rise with a positive curve (a smile); one corner rises further with asymmetry (a sneer).
    middle = mouth_y - curve * xs**2 - asymmetry * np.clip(xs, 0, None)
    upper = middle - opening * 6.0 * (1 - xs**2)
    lower = middle + opening * 18.0 * (1 - xs**2)
    points_x = center_x + half_width * xs
    if opening > 0.08:
        polygon = np.concatenate([np.stack([points_x, upper], 1), np.stack([points_x, lower], 1)[::-1]])
        cv2.fillPoly(canvas, [np.rint(polygon).astype(np.int32)], dark)
    line = np.rint(np.stack([points_x, middle], 1)).astype(np.int32)
    cv2.polylines(canvas, [line], False, skin * 0.35, 4)


def make_demo_dataset(out_dir: str | os.PathLike, per_class: int | None = None, seed: int = 0,
                      test_fraction: float = 0.25, overwrite: bool = False) -> Path:
    """Write the demo dataset as `out_dir/{train,test}/<class>/<name>.png` and return `out_dir`; `per_class`:
    average training images per class (default 100), test gets `test_fraction` of that."""
    import cv2

    per_class = DEFAULT_PER_CLASS if per_class is None else int(per_class)
    if per_class < MIN_PER_CLASS:
        raise ValueError(f"per_class (--per-class) must be at least {MIN_PER_CLASS}, got {per_class}.")
    if not 0.0 < test_fraction <= 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1], got {test_fraction}.")
    out_dir = files.check_output(out_dir, "folder", overwrite)  # empty, or written by this function
    if overwrite:
        files.remove_outputs(out_dir)
    rng = np.random.default_rng(seed)
    total, plan = sum(FER2013_TRAIN_COUNTS.values()), []
    for split, fraction in (("train", 1.0), ("test", test_fraction)):
        for name, share in FER2013_TRAIN_COUNTS.items():
            count = max(MIN_PER_CLASS // 2 if fraction < 1 else MIN_PER_CLASS,
                        int(round(per_class * len(CLASS_NAMES) * share / total * fraction)))
            for index in range(count):
                # Kaggle's file names, so test splits into FER2013's two test sets (data.test_usages).
                prefix = "Training" if split == "train" else ("PublicTest", "PrivateTest")[index % 2]
                plan.append((name, out_dir / split / name / f"{prefix}_{index:05d}.png"))
    files.record_output(*(path for _, path in plan), folder=out_dir)
    for name, path in plan:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.write_bytes(cv2.imencode(".png", draw_face(name, rng))[1].tobytes())
        except OSError as error:
            raise files.write_error(error, path) from None
    return out_dir


def demo_dataset_path() -> Path:
    """The demo dataset's folder in the cache, generated on first use."""
    try:
        return _materialise_demo(files.default_cache_dir())
    except OSError:  # an unwritable cache (a read-only home, say): the system's temporary folder
        import tempfile

        return _materialise_demo(Path(tempfile.gettempdir()) / "fer_utils")


def _materialise_demo(root: Path) -> Path:
    import shutil

    out_dir = root / f"demo-v2-seed0-n{DEFAULT_PER_CLASS}"  # "v2": Kaggle-style file names
    if not (out_dir / ".complete").is_file():
        staging = root / f".{out_dir.name}.partial-{os.getpid()}"  # renamed when complete
        make_demo_dataset(staging, per_class=DEFAULT_PER_CLASS, seed=0, overwrite=True)
        (staging / ".complete").write_text("ok\n")
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(staging, out_dir)
    return out_dir
