"""Hostile inputs (issue 33, the input half): decompression bombs, broken images, huge video frames,
foreign models and odd datasets each end in exit status 2 with one `error:` line, no traceback, and
the user's files byte-identical.

Every case runs the command line (`fer_utils.cli.main`, or a subprocess where memory is measured).
"""

import hashlib
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from fer_utils import CLASS_NAMES, cli, data, faces
from fer_utils.runs import save_run
from fer_utils.video import write_test_video

BOMB_SIDE = 20_000  # 400 megapixels of one colour: 0.4 MB as a PNG, 1.2 GB decoded as RGB


def _png(path, width, height, rows=None):
    """A gray PNG of `width` x `height` zeros, written row by row (never held in memory); `rows` < height
    leaves the image data short of what the header claims."""
    compressor, row = zlib.compressobj(9), bytes(width + 1)  # filter byte + one row
    body = b"".join(compressor.compress(row) for _ in range(height if rows is None else rows)) + compressor.flush()

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    return _png(tmp_path_factory.mktemp("bomb") / "bomb.png", BOMB_SIDE, BOMB_SIDE)


def _digest(*paths):
    """A hash of every file under `paths` (names and bytes), to show that nothing the user owns changed."""
    digest = hashlib.sha256()
    for root in map(Path, paths):
        for path in sorted([root] if root.is_file() else root.rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(root.parent)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _refused(capfd, argv, *expected):
    """Run the CLI; it must exit 2 with exactly one `error:` line (holding each of `expected`) and no traceback."""
    capfd.readouterr()
    status = cli.main([str(arg) for arg in argv])
    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert status == 2, err
    assert len(errors) == 1 and "Traceback" not in err and "\x1b[" not in err, err
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


# --- images -----------------------------------------------------------------------------------------
def test_predict_on_a_decompression_bomb_is_refused_in_seconds_with_bounded_memory(bomb, tmp_path):
    # A wrapper process runs the CLI as its only child, so RUSAGE_CHILDREN is that child's peak. The
    # OpenCV limit below only guards this machine should the header check ever regress.
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "result = subprocess.run([sys.executable, '-m', 'fer_utils', 'predict', sys.argv[1]], capture_output=True, "
        "text=True, timeout=120)\n"
        "print(result.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - start)\n"
        "sys.stderr.write(result.stderr)\n"
    )
    before = _digest(bomb)
    env = {**os.environ, "OPENCV_IO_MAX_IMAGE_PIXELS": str(100_000_000)}
    result = subprocess.run([sys.executable, "-c", wrapper, str(bomb)], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=180)
    status, peak_kb, seconds = result.stdout.split()
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert int(status) == 2, result.stderr
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(bomb) in errors[0] and "megapixels" in errors[0] and "downscale" in errors[0]
    print(f"bomb: peak {int(peak_kb) / 1024:.0f} MiB, {float(seconds):.1f} s")
    assert int(peak_kb) < 1024 * 1024, f"peak memory {int(peak_kb) / 1024:.0f} MiB"
    assert float(seconds) < 60
    assert _digest(bomb) == before


def test_a_photo_whose_header_claims_too_many_pixels_is_refused_before_decoding(tmp_path, capfd):
    # 9000 x 9000 is under Pillow's own limit, so its size is named; 100000 x 100000 is over it. Both
    # files are a few kilobytes: their image data stops long before what the header claims.
    photo = _png(tmp_path / "huge.png", 9000, 9000, rows=10)
    claim = _png(tmp_path / "claim.png", 100_000, 100_000, rows=1)
    before = _digest(tmp_path)
    _refused(capfd, ["predict", photo], "huge.png", "9000x9000 pixels", f"{data.MAX_PIXELS // 10**6} megapixels")
    _refused(capfd, ["predict", claim], "claim.png", "megapixels", "downscale")
    with pytest.raises(ValueError, match="9000x9000"):
        faces.load_image(photo)
    assert _digest(tmp_path) == before


def test_a_truncated_photo_is_one_line_and_a_garbage_one_too(tmp_path, capfd):
    import cv2

    good = tmp_path / "good.png"
    assert cv2.imwrite(str(good), cv2.imread(str(faces.sample_photo_path())))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all" * 10)
    before = _digest(tmp_path)
    _refused(capfd, ["predict", truncated], "Cannot decode", "truncated.png")
    _refused(capfd, ["predict", garbage], "Cannot decode", "garbage.jpg")
    assert _digest(tmp_path) == before


def test_a_photo_within_the_limit_still_loads():
    image = faces.load_image(faces.sample_photo_path())
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def test_a_video_with_frames_over_the_limit_is_refused_before_the_first_frame(tmp_path, capfd, monkeypatch, run_dir):
    clip = write_test_video(tmp_path / "clip.mp4", frames=2)
    monkeypatch.setattr(data, "MAX_PIXELS", 320 * 240 - 1)  # the clip's frames are 320x240
    before = _digest(clip)
    out = tmp_path / "out" / "annotated.mp4"
    _refused(capfd, ["predict", "--model", run_dir, clip, "--out", out], "clip.mp4", "320x240", "ffmpeg")
    assert not out.exists() and _digest(clip) == before


# --- datasets ---------------------------------------------------------------------------------------
@pytest.fixture
def dataset(demo_root, tmp_path):
    root = tmp_path / "fer"
    shutil.copytree(demo_root, root)
    return root


def test_a_bomb_in_a_dataset_folder_is_named_before_it_is_decoded(dataset, bomb, capfd):
    shutil.copy(bomb, dataset / "test" / "happy" / "bomb.png")
    before = _digest(dataset)
    _refused(capfd, ["info", dataset, "--no-cache"], str(dataset / "test" / "happy" / "bomb.png"), "megapixels")
    assert _digest(dataset) == before


def test_a_dataset_image_whose_header_lies_is_named(dataset, capfd):
    _png(dataset / "train" / "sad" / "liar.png", 8000, 8000, rows=2)
    _refused(capfd, ["info", dataset, "--no-cache"], "liar.png", "8000x8000 pixels")


def test_normal_48x48_dataset_images_still_load(demo_root):
    split = data.load_split(demo_root / "test", cache=False, progress=False)
    assert split.images.shape[1:] == (48, 48, 1) and len(split) == len(list((demo_root / "test").rglob("*.png")))


def _twin(folder: Path, name: str) -> None:
    """Copy `folder` to a sibling `name` that differs only in case; skip where the file system ignores case."""
    twin = folder.parent / name
    if twin.exists():
        pytest.skip("this file system does not tell names apart by case")
    shutil.copytree(folder, twin)


def test_class_folders_that_differ_only_in_case_are_both_named(dataset, capfd):
    _twin(dataset / "test" / "happy", "Happy")
    before = _digest(dataset)
    line = _refused(capfd, ["info", dataset, "--no-cache"], "'Happy/'", "'happy/'", str(dataset / "test"))
    assert "move" in line
    assert _digest(dataset) == before


def test_split_folders_that_differ_only_in_case_are_both_named(dataset, capfd):
    _twin(dataset / "train", "Train")
    _refused(capfd, ["info", dataset, "--no-cache"], "'Train/'", "'train/'")


def test_a_zip_given_as_data_says_to_extract_it_and_where(dataset, tmp_path, capfd, run_dir):
    archive = Path(shutil.make_archive(str(tmp_path / "archive"), "zip", dataset))
    before = _digest(archive)
    line = _refused(capfd, ["info", archive], "archive.zip", "unzip", str(tmp_path / "archive"))
    assert "train/" in line
    _refused(capfd, ["evaluate", "--model", run_dir, "--data", archive, "--n-boot", "0"], "unzip")
    assert _digest(archive) == before


# --- foreign models ---------------------------------------------------------------------------------
def _model(input_shape=(48, 48, 1), units=len(CLASS_NAMES), outputs=1):
    import keras

    pixels = keras.Input(input_shape)
    flat = keras.layers.Flatten()(pixels)
    heads = [keras.layers.Dense(units, activation="softmax")(flat) for _ in range(outputs)]
    return keras.Model(pixels, heads if outputs > 1 else heads[0])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run") / "run"
    return save_run(folder, _model(), {"name": "tiny", "class_names": list(CLASS_NAMES)})


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """Models a user might point the tool at: a 64x64 RGB one (file and run folder), 3 classes, 3 outputs."""
    folder = tmp_path_factory.mktemp("foreign")
    _model((64, 64, 3)).save(folder / "rgb64.keras")
    _model(units=3).save(folder / "three_classes.keras")
    _model(outputs=3).save(folder / "three_outputs.keras")
    save_run(folder / "rgb64_run", _model((64, 64, 3)), {"name": "rgb64", "class_names": list(CLASS_NAMES)})
    return folder


FOREIGN = {
    "rgb64.keras": ["(None, 64, 64, 3)", "(None, 48, 48, 1)", "48x48 grayscale", "trained by fer_utils"],
    "rgb64_run": ["(None, 64, 64, 3)", "model.keras", "48x48 grayscale"],
    "three_classes.keras": ["has 3 outputs but 7 classes", "class_names.json"],
    "three_outputs.keras": ["outputs [(None, 7), (None, 7), (None, 7)]", "reads one"],
}


@pytest.mark.parametrize("name", FOREIGN)
def test_a_foreign_model_is_refused_up_front_by_every_command(foreign, name, demo_root, tmp_path, capfd):
    model = foreign / name
    before = _digest(model, demo_root)
    expected = [str(model), *FOREIGN[name]]
    _refused(capfd, ["evaluate", "--model", model, "--data", demo_root, "--n-boot", "0"], *expected)
    _refused(capfd, ["predict", "--model", model, faces.sample_photo_path()], *expected)
    _refused(capfd, ["compare", model, model, "--data", demo_root, "--out", tmp_path / "cmp", "--n-boot", "0"],
             *expected)
    _refused(capfd, ["export", model, "--format", "onnx", "--out", tmp_path / "model.onnx"], *expected)
    assert not (tmp_path / "model.onnx").exists()
    assert _digest(model, demo_root) == before


def test_load_model_checks_an_in_memory_model_too():
    from fer_utils.loading import load_model

    with pytest.raises(ValueError, match=r"takes input \(None, 64, 64, 3\)"):
        load_model(_model((64, 64, 3)))
    with pytest.raises(ValueError, match="has 3 outputs but 7 classes"):
        load_model(_model(units=3))
    assert load_model(_model(units=3), class_names=["a", "b", "c"]).class_names == ("a", "b", "c")
