"""What a reader sees: no framework log lines in the committed notebooks or on the console.

TensorFlow's C++ start-up lines (absl, CUDA stub, cuInit), its per-call `NodeDef mentions attribute`
error and tf.function retracing warnings say "broken" to a reader. `fer_utils.backend.quiet_tensorflow`
keeps them away (notebook.setup and the command line call it before TensorFlow is imported) and
`fer_utils.models.predict` removes the retracing at its cause. These tests scan the committed
notebooks, and run fresh processes to check their stderr.
"""

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from fer_utils import backend

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MACHINE_PATH = re.compile(r"(?<![\w.~])/(work|tmp|root|home|Users)/")


def _outputs(path):
    for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
        for output in cell.get("outputs", []):
            texts = [output.get("text", "")] + [value for key, value in output.get("data", {}).items() if key.startswith("text/")]
            yield index, output, "\n".join(text if isinstance(text, str) else "".join(text) for text in texts)


def test_the_noise_patterns_match_the_lines_seen_before():
    seen = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796117123.979034   10783 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.",
        "E0000 00:00:1796117131.912752   10783 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
        "E0000 00:00:1796117157.397856   11034 node_def_util.cc:682] NodeDef mentions attribute use_unbounded_threadpool which is not in the op definition",
        "WARNING:tensorflow:5 out of the last 7 calls to <function TensorFlowTrainer.make_predict_function> triggered tf.function retracing.",
        "I0000 00:00:1.2 123 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results",
    ]
    assert all(backend.LOG_NOISE.search(line) for line in seen)
    assert not backend.LOG_NOISE.search("Epoch 1/3 val_accuracy 0.5 | Decoding train: 100%")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_committed_notebook_outputs_hold_no_log_lines_no_stderr_and_no_machine_paths(path):
    problems = []
    for index, output, text in _outputs(path):
        if output.get("output_type") == "stream" and output.get("name") == "stderr" and text.strip():
            problems.append(f"cell {index}: stderr output {text[:120]!r}")
        if backend.LOG_NOISE.search(text):
            problems.append(f"cell {index}: framework log line {backend.LOG_NOISE.search(text).group(0)!r}")
        if MACHINE_PATH.search(text):
            problems.append(f"cell {index}: machine path near {text[max(0, MACHINE_PATH.search(text).start() - 40):][:100]!r}")
        if output.get("output_type") == "error":
            problems.append(f"cell {index}: an error output")
    assert problems == []


@pytest.mark.parametrize("path", [path for path in NOTEBOOKS if "_train_" in path.name], ids=lambda path: path.stem)
def test_training_shows_a_bar_per_phase_not_a_line_per_epoch(path):
    text = "\n".join(text for _, _, text in _outputs(path))
    assert not re.search(r"^Epoch \d+/\d+", text, re.MULTILINE)
    # tqdm redraws a bar with carriage returns: one "[phase]: NN%|...| done/total" bar per phase.
    for phase in ("head", "finetune"):
        assert re.search(rf"(^|\r)\[{phase}\]: +\d+%\|.*\d+/\d+", text, re.MULTILINE), phase


def _run(code: str):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=600,
                          cwd=ROOT, env=_environment())


def _environment():
    import os

    env = {key: value for key, value in os.environ.items() if key != backend.LOG_LEVEL_VARIABLE}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def test_quiet_tensorflow_leaves_stderr_empty_through_import_fit_and_predict():
    result = _run(
        """
        from fer_utils import backend
        backend.quiet_tensorflow()
        import numpy as np, keras
        from fer_utils import models
        model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
        model.compile("adam", "categorical_crossentropy")
        x, y = np.random.rand(40, 2, 2, 1).astype("float32"), keras.utils.to_categorical(np.arange(40) % 3, 3)
        model.fit(x, y, epochs=1, batch_size=8, verbose=0)
        for size in (5, 7, 9, 11, 13, 17):  # varying sizes, as in a loop over runs
            models.predict(model, x[:size])
        print("done")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert result.stderr.strip() == "", result.stderr


def test_quiet_tensorflow_passes_other_stderr_lines_on():
    result = _run(
        """
        import os
        from fer_utils import backend
        with backend._stderr_filtered():
            os.write(2, b"I0000 00:00:1.0 1 cudart_stub.cc:31] Could not find cuda drivers\\nsomething that matters\\n")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "something that matters"


def test_cli_console_holds_no_framework_log_lines(demo_root, tmp_path):
    info = subprocess.run([sys.executable, "-m", "fer_utils", "info", str(demo_root)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, env=_environment())
    assert info.returncode == 0, info.stderr
    # stderr holds the decoding progress bar (a terminal's place for it) and nothing else.
    assert all(line.startswith("Decoding ") for line in re.split(r"[\r\n]", info.stderr) if line.strip()), info.stderr
    train = subprocess.run(
        [sys.executable, "-m", "fer_utils", "train", "--backbone", "small_cnn", "--data", str(demo_root),
         "--out", str(tmp_path / "run"), "--epochs", "2", "--no-cache"],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=_environment(),
    )
    assert train.returncode == 0, train.stderr
    assert not backend.LOG_NOISE.search(train.stderr + train.stdout), train.stderr
    assert not re.search(r"^Epoch \d+/", train.stdout + train.stderr, re.MULTILINE)
    assert re.search(r"\[end_to_end\]: +100%\|.*2/2", train.stderr)  # one bar for the phase, on stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_figures_are_stored_as_images_not_as_their_text(path):
    """A kernel without the inline backend shows a returned Figure as '<Figure size ...>' text."""
    shown_as_text = [index for index, output, text in _outputs(path)
                     if "<Figure size" in text and "image/png" not in output.get("data", {})]
    images = [index for index, output, _ in _outputs(path) if "image/png" in output.get("data", {})]
    assert shown_as_text == [] and images
