"""benchmarks/bench_backends.py: its helpers, and a tiny run on two backends side by side."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_backends.py"


@pytest.fixture(scope="module")
def bench():
    """The benchmark script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_backends", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ok_record(backend, backbone, train, infer, first_fit_s=1.0):
    return {"backend": backend, "backbone": backbone, "status": "ok", "train": train, "infer": infer,
            "first_fit_s": first_fit_s, "load": [1.0, 2.0], "versions": {"keras": "3.x", backend: "1.0"}}


def test_parse_result_takes_the_last_marked_line(bench):
    stdout = "\n".join([
        "some library chatter",
        bench.RESULT_PREFIX + json.dumps({"backend": "jax", "train": 1.0}),
        "more chatter",
        bench.RESULT_PREFIX + json.dumps({"backend": "jax", "train": 2.5}),
    ])
    assert bench.parse_result(stdout) == {"backend": "jax", "train": 2.5}
    assert bench.parse_result("no result here\n") is None


def test_parse_python_for_checks_backend_and_path(bench, tmp_path):
    assert bench.parse_python_for([f"torch={sys.executable}"]) == {"torch": sys.executable}
    with pytest.raises(ValueError, match="BACKEND=PYTHON"):
        bench.parse_python_for([f"mxnet={sys.executable}"])
    with pytest.raises(ValueError, match="does not exist"):
        bench.parse_python_for([f"torch={tmp_path / 'no-python'}"])


def test_missing_backend_package_is_reported_not_raised(bench, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real_find_spec(name, *a))
    args = type("Args", (), {"child": "small_cnn"})()
    record = bench.run_child(args)
    assert record["status"] == bench.NOT_INSTALLED
    assert record["missing"] == ["torch"]


def test_report_puts_backends_side_by_side_with_ratios(bench):
    records = [
        ok_record("tensorflow", "small_cnn", 200.0, 1000.0),
        ok_record("jax", "small_cnn", 300.0, 500.0, first_fit_s=12.345),
        {"backend": "torch", "backbone": "small_cnn", "status": bench.NOT_INSTALLED},
        ok_record("tensorflow", "vgg16", 40.25, 100.0),
        {"backend": "jax", "backbone": "vgg16", "status": "error", "error": "RuntimeError: boom"},
        {"backend": "torch", "backbone": "vgg16", "status": bench.NOT_INSTALLED},
    ]
    report = bench.format_report(records, ["tensorflow", "jax", "torch"], ["small_cnn", "vgg16"], "figures")
    lines = report.splitlines()
    header = next(line for line in lines if line.startswith("backbone"))
    assert header.split() == ["backbone", "mode", "tensorflow", "jax", "torch"]
    train = next(line for line in lines if line.startswith("small_cnn   train"))
    assert re.search(r"200\s+300 \(1\.50x\)\s+not installed$", train)
    infer = next(line for line in lines if line.startswith("small_cnn   infer"))
    assert "500 (0.50x)" in infer
    first_fit = next(line for line in lines if line.startswith("small_cnn   1st fit"))
    assert first_fit.split()[3:] == ["1", "12.3", "not", "installed"]  # seconds get no ratio
    vgg_train = next(line for line in lines if line.startswith("vgg16       train"))
    assert vgg_train.split()[2:] == ["40.2", "error", "not", "installed"]
    assert "error: vgg16 on jax: RuntimeError: boom" in lines
    assert any(line.split()[:1] == ["torch"] and "not installed" in line for line in lines)
    assert "load average (1 min) around the measurements: 1.00 .. 2.00" in lines


def test_quick_run_prints_tensorflow_and_jax_side_by_side():
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    if os.environ.get("KERAS_BACKEND") == "jax":
        pytest.skip("the benchmark picks its backends itself, in their own processes: once per CI run, in make test")
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--backends", "tensorflow", "jax", "--backbones", "small_cnn"],
        capture_output=True, text=True, timeout=1200,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    lines = completed.stdout.splitlines()
    header = next(line for line in lines if line.startswith("backbone"))
    assert header.split() == ["backbone", "mode", "tensorflow", "jax"]
    number = r"[\d,]+(\.\d+)?"
    for mode in ("train", "infer"):
        row = next(line for line in lines if line.startswith("small_cnn") and line.split()[1] == mode)
        assert re.fullmatch(rf"small_cnn\s+{mode}\s+{number}\s+{number} \(\d+\.\d\dx\)", row.strip()), row
    assert any(line.strip().startswith("tensorflow") and "keras" in line for line in lines)
    assert any(line.strip().startswith("jax") and "jaxlib" in line for line in lines)
    assert not any(line.startswith("error:") for line in lines), completed.stdout


@pytest.mark.parametrize(("argv", "message"), [
    (["--backbones", "vgg19"], "Unknown backbone 'vgg19'"),
    (["--python-for", "torch=/no/such/python"], "/no/such/python does not exist"),
])
def test_bad_options_are_usage_errors_before_any_measurement(bench, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
