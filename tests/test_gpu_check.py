"""benchmarks/gpu_check.py: its helpers, and the whole check under `--dry-run` on the JAX backend."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_stratified_indices_keep_class_shares_and_every_class(gpu_check):
    labels = np.repeat(np.arange(7), [400, 40, 400, 700, 480, 320, 500])
    indices = gpu_check.stratified_indices(labels, 100, seed=1)
    counts = np.bincount(labels[indices], minlength=7)
    assert len(indices) == 100 and len(np.unique(indices)) == 100
    assert np.all(counts >= 1)
    # Each class within one image of its exact share.
    shares = np.bincount(labels) / len(labels) * 100
    assert np.all(np.abs(counts - shares) <= 1.0)
    assert np.array_equal(indices, gpu_check.stratified_indices(labels, 100, seed=1))
    assert not np.array_equal(indices, gpu_check.stratified_indices(labels, 100, seed=2))


def test_stratified_indices_give_a_rare_class_one_image_and_reject_bad_counts(gpu_check):
    labels = np.array([0] * 98 + [1] * 2)
    counts = np.bincount(labels[gpu_check.stratified_indices(labels, 10)], minlength=2)
    assert counts.tolist() == [9, 1]
    with pytest.raises(ValueError, match="cannot hold all 2 classes"):
        gpu_check.stratified_indices(labels, 1)
    with pytest.raises(ValueError, match="holds only 100"):
        gpu_check.stratified_indices(labels, 101)


def test_write_subset_writes_a_stratified_uint8_npz(gpu_check, demo_root, tmp_path):
    from fer_utils import CLASS_NAMES, data

    path = gpu_check.write_subset(demo_root, tmp_path / "sub" / "subset.npz", count=35, seed=0)
    assert path == tmp_path / "sub" / "subset.npz" and path.is_file()
    images, labels, class_names = gpu_check.read_subset(path)
    assert images.dtype == np.uint8 and images.shape == (35, 48, 48, 1)
    assert labels.dtype == np.int64 and labels.shape == (35,)
    assert class_names == CLASS_NAMES
    train = data.load_dataset(demo_root, progress=False)["train"]
    expected = np.bincount(train.labels, minlength=7) / len(train) * 35
    counts = np.bincount(labels, minlength=7)
    assert counts.sum() == 35 and np.all(counts >= 1) and np.all(np.abs(counts - expected) <= 1.0)
    # The images are the split's own rows, not copies of one.
    assert len({image.tobytes() for image in images}) == 35
    assert {image.tobytes() for image in images} <= {image.tobytes() for image in train.images}


def test_read_subset_says_how_to_create_a_missing_file(gpu_check, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--make-subset PATH/TO/fer2013 --subset .*missing\.npz"):
        gpu_check.read_subset(tmp_path / "missing.npz")
    wrong = tmp_path / "wrong.npz"
    np.savez_compressed(wrong, images=np.zeros((2, 48, 48), np.uint8), labels=np.zeros(2), class_names=np.array(["a"]))
    with pytest.raises(ValueError, match=r"expected uint8 \(N, 48, 48, 1\)"):
        gpu_check.read_subset(wrong)


def test_per_step_losses_undo_the_running_mean(gpu_check):
    losses = np.array([2.0, 1.5, 1.7, 0.9, 1.1])
    running = np.cumsum(losses) / np.arange(1, 6)
    assert np.allclose(gpu_check.per_step_losses(running), losses)


def test_loss_falls_compares_the_first_and_last_windows(gpu_check):
    assert gpu_check.loss_falls([2.0, 1.9, 1.0, 0.9]) == (True, 2.0, 0.9)
    falls, first, last = gpu_check.loss_falls(np.linspace(1.0, 2.0, 40))
    assert not falls and first < last
    assert gpu_check.loss_falls([2.0, np.nan])[0] is False
    with pytest.raises(ValueError, match="at least 2"):
        gpu_check.loss_falls([1.0])


def test_steady_pace_counts_the_steps_after_the_first(gpu_check):
    assert gpu_check.steady_images_per_second([10.0, 10.5, 11.0, 11.5], batch_size=8) == pytest.approx(16.0)
    with pytest.raises(ValueError, match="at least 2"):
        gpu_check.steady_images_per_second([1.0], batch_size=8)


def test_results_table_shows_the_ratio_and_missing_figures(gpu_check):
    def row(backbone, setting, speed):
        return {"backbone": backbone, "setting": setting, "policy": "float32" if setting == "float32" else "mixed_bfloat16",
                "jit_compile": True, "compute_dtype": "float32" if setting == "float32" else "bfloat16",
                "images_per_s": speed, "peak_bytes": 3 * 2**30 if speed else None,
                "epoch_s": 28709 / speed if speed else None, "loss_first": 2.1, "loss_last": 1.8}

    failed = {"backbone": "resnet50", "setting": "mixed", "policy": "mixed_bfloat16", "failures": ["boom"]}
    table = gpu_check.results_table([row("vgg16", "float32", 1000.0), row("vgg16", "mixed", 2500.0), failed])
    lines = table.splitlines()
    assert lines[0].split(" | ")[0].strip() == "backbone" and len(lines) == 5
    assert "2.50x" in lines[3] and "3.00 GiB" in lines[3] and "11.5" in lines[3] and "2.100 -> 1.800" in lines[3]
    assert "failed" in lines[4]


def test_hide_tensorflow_makes_it_look_uninstalled():
    code = textwrap.dedent(f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("gpu_check", {str(SCRIPT)!r})
        module = importlib.util.module_from_spec(spec)
        sys.modules["gpu_check"] = module
        spec.loader.exec_module(module)
        module.hide_tensorflow()
        assert importlib.util.find_spec("tensorflow") is None
        try:
            import tensorflow
        except ModuleNotFoundError as error:
            assert error.name == "tensorflow", error.name
        else:
            raise AssertionError("tensorflow was imported")
        assert "tensorflow" not in sys.modules
        import json, fer_utils.files  # everything else still imports
        print("hidden")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hidden"


def test_a_setting_in_its_own_process_reports_its_failure(gpu_check, tmp_path):
    job = gpu_check.Job(backbone="vgg16", setting="mixed", subset=str(tmp_path / "none.npz"), img_size=32,
                        batch_size=8, steps=2, warmup_steps=1)
    result = gpu_check.run_child(job, allow_tensorflow=False)
    assert (result["backbone"], result["setting"], result["policy"]) == ("vgg16", "mixed", "mixed_bfloat16")
    assert len(result["failures"]) == 1 and "FileNotFoundError: No FER2013 subset at" in result["failures"][0]


def test_the_check_without_a_subset_says_how_to_make_one(tmp_path):
    missing = tmp_path / "none.npz"
    result = subprocess.run([sys.executable, str(SCRIPT), "--subset", str(missing)], capture_output=True, text=True,
                            timeout=120, cwd=ROOT, env={**os.environ, "KERAS_BACKEND": "jax"})
    assert result.returncode == 2
    assert f"No FER2013 subset at {missing}." in result.stdout
    assert "python benchmarks/gpu_check.py --make-subset PATH/TO/fer2013" in result.stdout


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed: the check runs under the JAX backend")
@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") == "jax",
                    reason="the check picks its backend itself, in its own process: once per CI run, in make test")
def test_dry_run_checks_both_backbones_in_both_settings():
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, str(SCRIPT), "--dry-run"], capture_output=True, text=True, timeout=3000,
                            cwd=ROOT, env=env)
    output = result.stdout
    assert result.returncode == 0, output[-6000:] + result.stderr[-3000:]
    assert output.splitlines()[0].startswith("GPU check under the jax Keras backend")
    assert "Keras marks the project's augmentation layers" in output
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split(" | ")]
        if len(cells) == 9 and cells[0] in ("vgg16", "resnet50"):
            rows[(cells[0], cells[1])] = cells
    assert set(rows) == {(b, s) for b in ("vgg16", "resnet50") for s in ("float32", "mixed_bfloat16")}
    for (backbone, setting), cells in rows.items():
        _, _, xla, compute, speed, ratio, memory, epoch, loss = cells
        assert xla == "yes"
        assert compute == ("float32" if setting == "float32" else "bfloat16")
        assert float(speed.replace(",", "")) > 0 and float(epoch.replace(",", "")) > 0
        assert memory == "n/a"  # a CPU has no allocator statistics
        assert re.fullmatch(r"\d+\.\d+x", ratio) if setting != "float32" else ratio == "-"
        # Reported, not asserted to fall, in a dry run (ten tiny steps from random weights).
        assert all(np.isfinite(float(value)) for value in loss.split(" -> "))
    # Grad-CAM and TTA once, on the first backbone's mixed model.
    assert len(re.findall(r"Grad-CAM \d+\.\d s", output)) == 1 and len(re.findall(r"TTA \d+\.\d s", output)) == 1
    assert output.rstrip().splitlines()[-1] == "GPU check passed"
