"""The output rule of every command that writes (issue 33, its output half).

A target that exists and was not written by fer_utils is never changed; `--overwrite` replaces only
what fer_utils wrote there (the folder's `.fer-written` manifest). Targets are checked before any
work; a full or read-only disk names the file; SIGTERM stops like Ctrl-C. Every refusal is exit 2 and
one `error:` line, no traceback, and every user file stays byte-identical (hashed before and after).
"""

import errno
import hashlib
import json
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from contract_models import tiny_contract_model
from helpers import write_image

import fer_utils.report  # noqa: F401 (imported before a test replaces evaluation.evaluate_model: binds the real one)
from fer_utils import CLASS_NAMES, cli, evaluation, export, files, recipe, runs, training


def _fails(capsys, argv, *fragments, status=2) -> str:
    """Run the CLI, expect `status` and one `error:` line holding every fragment; return that line."""
    code = cli.main([str(arg) for arg in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == status, err
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _hashes(root) -> dict:
    """sha256 of every file under `root` (or of `root` itself when it is a file)."""
    root = Path(root)
    paths = [root] if root.is_file() else [path for path in root.rglob("*") if path.is_file()]
    return {path.as_posix(): hashlib.sha256(path.read_bytes()).hexdigest() for path in paths}


def _user_folder(folder, names) -> dict:
    """Write the user's files `names` (relative paths) into `folder`; return their hashes."""
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(f"the user's {name}".encode())
    return _hashes(folder)


def _not_called(*args, **kwargs):
    raise AssertionError("the work started before the output target was checked")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    config = {"name": "tiny", "class_names": list(CLASS_NAMES), "wall_time_s": {"total": 1.0}, "n_params": 10}
    history = pd.DataFrame({"epoch": [1], "phase": ["head"], "loss": [1.9], "accuracy": [0.2],
                            "val_loss": [1.9], "val_accuracy": [0.2]})
    return runs.save_run(tmp_path_factory.mktemp("tiny") / "run", tiny_contract_model(), config, history,
                         {"accuracy": 0.3})


def _evaluate(tiny_run, demo_root, json_path, *extra):
    return ["evaluate", "--model", tiny_run, "--data", demo_root, "--n-boot", "0", "--json", json_path, *extra]


def _compare(tiny_run, demo_root, out, *extra):
    return ["compare", tiny_run, "--data", demo_root, "--out", out, "--n-boot", "0", "--no-figures", *extra]


def _train(demo_root, out, *extra):
    return ["train", "--backbone", "small_cnn", "--data", demo_root, "--out", out, "--epochs", "2", "--batch-size", "32",
            "--augmentation", "flip=false,rotation=0,zoom=0,translation=0,contrast=0", "--quiet", *extra]


# =============================================================================================
# Existing targets holding the user's files
# =============================================================================================
@pytest.mark.parametrize("overwrite", [False, True])
def test_evaluate_json_never_replaces_a_user_file_and_refuses_before_evaluating(tiny_run, demo_root, tmp_path, capsys,
                                                                                monkeypatch, overwrite):
    mine = tmp_path / "user.json"
    mine.write_text('{"mine": 1}\n')
    before = _hashes(tmp_path)
    monkeypatch.setattr(evaluation, "evaluate_model", _not_called)
    _fails(capsys, _evaluate(tiny_run, demo_root, mine, *(["--overwrite"] if overwrite else [])),
           str(mine), "not written by fer_utils", "Choose another file name")
    assert _hashes(tmp_path) == before


def test_evaluate_json_replaces_its_own_file_only_with_overwrite(tiny_run, demo_root, tmp_path, capsys):
    out = tmp_path / "new" / "sub" / "metrics.json"  # missing folders on the way are created
    assert cli.main([str(arg) for arg in _evaluate(tiny_run, demo_root, out)]) == 0
    first = _hashes(out)
    _fails(capsys, _evaluate(tiny_run, demo_root, out), "earlier output of fer_utils", "--overwrite")
    assert _hashes(out) == first
    assert cli.main([str(arg) for arg in _evaluate(tiny_run, demo_root, out, "--overwrite")]) == 0
    assert json.loads(out.read_text())["model"] == str(tiny_run)


def test_evaluate_json_folder_fails_up_front(tiny_run, demo_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(evaluation, "evaluate_model", _not_called)
    _fails(capsys, _evaluate(tiny_run, demo_root, tmp_path), "is a folder, not a file", "Choose a new file name")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("overwrite", [False, True])
def test_compare_never_writes_into_a_folder_of_user_files(tiny_run, demo_root, tmp_path, capsys, monkeypatch, overwrite):
    before = _user_folder(tmp_path, ["summary.md", "summary.json", "confusion_matrices.png"])
    monkeypatch.setattr(evaluation, "evaluate_model", _not_called)
    _fails(capsys, _compare(tiny_run, demo_root, tmp_path, *(["--overwrite"] if overwrite else [])),
           "did not write", "confusion_matrices.png", "summary.md", "new or empty folder")
    assert _hashes(tmp_path) == before


def test_compare_reruns_only_with_overwrite_and_never_with_a_user_file_added(tiny_run, demo_root, tmp_path, capsys):
    out = tmp_path / "comparison"
    assert cli.main([str(arg) for arg in _compare(tiny_run, demo_root, out)]) == 0
    assert {"summary.md", "summary.json"} <= files.read_manifest(out)
    _fails(capsys, _compare(tiny_run, demo_root, out), "earlier output of fer_utils", "--overwrite")
    assert cli.main([str(arg) for arg in _compare(tiny_run, demo_root, out, "--overwrite")]) == 0
    (out / "notes.txt").write_text("mine")
    before = _hashes(out)
    _fails(capsys, _compare(tiny_run, demo_root, out, "--overwrite"), "notes.txt", "did not write")
    assert _hashes(out) == before


def test_compare_out_that_is_a_file_is_one_line(tiny_run, demo_root, tmp_path, capsys):
    mine = tmp_path / "results"
    mine.write_text("mine")
    _fails(capsys, _compare(tiny_run, demo_root, mine), "is a file, not a folder")
    assert mine.read_text() == "mine"


@pytest.mark.parametrize("overwrite", [False, True])
def test_predict_never_replaces_an_existing_user_image(tiny_run, tmp_path, capsys, overwrite):
    photo, existing = tmp_path / "photo.png", tmp_path / "existing.png"
    write_image(photo, np.full((64, 64, 3), 120, np.uint8))
    write_image(existing, np.full((32, 32, 3), 7, np.uint8))
    before = _hashes(tmp_path)
    _fails(capsys, ["predict", "--model", tiny_run, photo, "--out", existing, *(["--overwrite"] if overwrite else [])],
           str(existing), "not written by fer_utils")
    assert _hashes(tmp_path) == before


def test_predict_replaces_its_own_output_only_with_overwrite(tiny_run, tmp_path, capsys):
    photo, out = tmp_path / "photo.png", tmp_path / "out" / "annotated.png"
    write_image(photo, np.full((64, 64, 3), 120, np.uint8))
    argv = [str(arg) for arg in ["predict", "--model", tiny_run, photo, "--out", out]]
    assert cli.main(argv) == 0 and out.is_file()
    _fails(capsys, argv, "earlier output of fer_utils", "--overwrite")
    assert cli.main([*argv, "--overwrite"]) == 0


@pytest.mark.parametrize("overwrite", [False, True])
def test_demo_data_never_writes_into_a_user_dataset(tmp_path, capsys, overwrite):
    before = _user_folder(tmp_path, ["train/happy/Training_00000.png", "test/sad/PublicTest_00001.png", "README.txt"])
    _fails(capsys, ["demo-data", tmp_path, "--per-class", "6", *(["--overwrite"] if overwrite else [])],
           "did not write", "Training_00000.png", "new or empty folder")
    assert _hashes(tmp_path) == before


def test_demo_data_rewrites_its_own_folder_only_with_overwrite(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo-data", str(out), "--per-class", "12"]) == 0
    count = len(list(out.rglob("*.png")))
    _fails(capsys, ["demo-data", out, "--per-class", "6"], "earlier output of fer_utils", "--overwrite")
    assert cli.main(["demo-data", str(out), "--per-class", "6", "--overwrite"]) == 0
    assert 0 < len(list(out.rglob("*.png"))) < count  # the larger earlier set is gone, not mixed in
    (out / "train" / "happy" / "mine.png").write_bytes(b"my own face")
    before = _hashes(out)
    _fails(capsys, ["demo-data", out, "--per-class", "6", "--overwrite"], "train/happy/mine.png", "did not write")
    assert _hashes(out) == before


def test_demo_data_per_class_names_the_flag(tmp_path, capsys):
    _fails(capsys, ["demo-data", tmp_path / "d", "--per-class", "5"], "--per-class must be at least 6, got 5")
    assert list(tmp_path.iterdir()) == []


# =============================================================================================
# export: only an earlier export is replaced; a failed export (or check) leaves nothing behind
# =============================================================================================
def test_export_overwrite_never_deletes_user_files_beside_a_saved_model(tmp_path, capsys):
    before = _user_folder(tmp_path, ["saved_model.pb", "notes.txt", "variables/mine.txt"])
    _fails(capsys, ["export", "builtin", "--format", "saved_model", "--out", tmp_path, "--overwrite"],
           "did not write", "notes.txt", "variables/mine.txt")
    assert _hashes(tmp_path) == before


def test_a_folder_of_hidden_files_empty_folders_or_links_is_not_taken_for_empty(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "empty_subfolder").mkdir(parents=True)
    (out / ".notes.tmp").write_text("mine")
    (tmp_path / "target").mkdir()
    (out / "linked").symlink_to(tmp_path / "target")
    _fails(capsys, ["export", "builtin", "--format", "saved_model", "--out", out, "--no-check"], "did not write")
    assert sorted(path.name for path in out.iterdir()) == [".notes.tmp", "empty_subfolder", "linked"]


def test_a_saved_model_export_is_replaced_with_overwrite_but_not_once_user_files_join_it(tiny_run, tmp_path, capsys):
    pytest.importorskip("tensorflow")
    out = tmp_path / "saved"
    argv = ["export", str(tiny_run), "--format", "saved_model", "--out", str(out), "--no-check"]
    assert cli.main(argv) == 0 and (out / "saved_model.pb").is_file()
    assert "saved_model.pb" in files.read_manifest(out)
    _fails(capsys, argv, "earlier output of fer_utils", "--overwrite")
    assert cli.main([*argv, "--overwrite"]) == 0
    (out / "variables" / "mine.txt").write_text("mine")
    before = _hashes(out)
    _fails(capsys, [*argv, "--overwrite"], "variables/mine.txt", "did not write")
    assert _hashes(out) == before


@pytest.mark.parametrize("failure", ["mismatch", "crash"])
def test_a_failed_export_check_removes_the_export_so_the_rerun_is_not_refused(tiny_run, tmp_path, capsys,
                                                                              monkeypatch, failure):
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    if failure == "mismatch":
        monkeypatch.setattr(export, "max_difference", lambda *args: 0.5)
    else:
        monkeypatch.setattr(export, "load_exported", lambda *args: (_ for _ in ()).throw(ValueError("runtime broke")))
    _fails(capsys, ["export", tiny_run, "--format", "onnx", "--out", out],
           *(["does not match the Keras model", "it was removed"] if failure == "mismatch" else ["runtime broke"]))
    assert not out.exists()
    monkeypatch.undo()
    assert cli.main(["export", str(tiny_run), "--format", "onnx", "--out", str(out)]) == 0


def test_saved_model_export_on_a_full_disk_is_one_line(tiny_run, tmp_path, capsys, monkeypatch):
    tf = pytest.importorskip("tensorflow")
    import keras

    def full(self, *args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "saved/variables/variables.data; No space left [Op:SaveV2]")

    monkeypatch.setattr(keras.Model, "export", full)
    out = tmp_path / "saved"
    _fails(capsys, ["export", tiny_run, "--format", "saved_model", "--out", out], f"Could not write '{out}'",
           "the disk is full")
    assert list(tmp_path.iterdir()) == []  # no half-written folder: the rerun is not refused


# =============================================================================================
# Targets are checked before any work
# =============================================================================================
def test_an_out_below_a_file_is_one_line(tiny_run, demo_root, tmp_path, capsys, monkeypatch):
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    monkeypatch.setattr(evaluation, "evaluate_model", _not_called)
    _fails(capsys, _evaluate(tiny_run, demo_root, mine / "metrics.json"), f"'{mine}' is a file", "cannot be created")
    _fails(capsys, _train(demo_root, mine / "run"), f"'{mine}' is a file")
    assert mine.read_text() == "mine"


@pytest.mark.parametrize("command", ["evaluate", "compare", "predict", "export", "demo-data", "train"])
def test_an_unwritable_folder_is_refused_before_any_work(tiny_run, demo_root, tmp_path, capsys, monkeypatch, command):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != locked and real_access(path, mode, **kw))
    monkeypatch.setattr(evaluation, "evaluate_model", _not_called)
    monkeypatch.setattr(training, "training_splits", _not_called)
    photo = tmp_path / "photo.png"
    write_image(photo, np.full((64, 64, 3), 120, np.uint8))
    argv = {
        "evaluate": _evaluate(tiny_run, demo_root, locked / "m.json"),
        "compare": _compare(tiny_run, demo_root, locked / "out"),
        "predict": ["predict", "--model", tiny_run, photo, "--out", locked / "a.png"],
        "export": ["export", tiny_run, "--format", "onnx", "--out", locked / "model.onnx"],
        "demo-data": ["demo-data", locked / "demo"],
        "train": _train(demo_root, locked / "run"),
    }[command]
    _fails(capsys, argv, f"Cannot write into '{locked}'", "permissions")
    assert list(locked.iterdir()) == []


# =============================================================================================
# Resource errors while writing name the file
# =============================================================================================
@pytest.mark.parametrize("code, reason", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "the disk is read-only"),
                                          (errno.EACCES, "permission denied")])
def test_a_failing_write_names_the_file_and_the_reason(tiny_run, demo_root, tmp_path, capsys, monkeypatch, code, reason):
    def fail(descriptor):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", fail)  # every atomic write flushes its temporary file to disk
    out = tmp_path / "metrics.json"
    _fails(capsys, _evaluate(tiny_run, demo_root, out), "Could not write", reason, "bytes")
    assert not out.exists() and not [path for path in tmp_path.iterdir() if files.is_temporary_name(path.name)]
    _fails(capsys, _compare(tiny_run, demo_root, tmp_path / "cmp"), "Could not write", reason)
    _fails(capsys, _train(demo_root, tmp_path / "run"), "Could not write", str(tmp_path / "run"), reason)


def test_a_full_disk_while_saving_a_model_names_the_file(tmp_path, monkeypatch):
    model = tiny_contract_model()

    def half_written(path, *args, **kwargs):
        Path(path).write_bytes(b"\0" * 2048)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model, "save", half_written)
    with pytest.raises(OSError, match=r"Could not write '.*model.keras' after 2,048 bytes: the disk is full") as error:
        runs.save_run(tmp_path / "run", model, {"class_names": list(CLASS_NAMES)})
    assert error.value.errno == errno.ENOSPC
    assert sorted(path.name for path in (tmp_path / "run").iterdir()) == []


def test_a_full_disk_while_writing_demo_data_names_the_file(tmp_path, capsys, monkeypatch):
    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    _fails(capsys, ["demo-data", tmp_path / "demo", "--per-class", "6"], "Training_00000.png", "the disk is full")


# =============================================================================================
# SIGTERM and Ctrl-C during train
# =============================================================================================
@pytest.mark.parametrize("stop, status, name", [("sigterm", 143, "SIGTERM"), ("ctrl-c", 130, "Ctrl-C")])
def test_a_stopped_train_says_that_rerunning_resumes(demo_root, tmp_path, capsys, monkeypatch, stop, status, name):
    def stopped(*args, **kwargs):
        if stop == "ctrl-c":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM was not delivered")

    monkeypatch.setattr(recipe, "train", stopped)
    previous = signal.getsignal(signal.SIGTERM)
    _fails(capsys, _train(demo_root, tmp_path / "run"), f"stopped by {name}", "same command again (without --overwrite) to resume",
           status=status)
    assert signal.getsignal(signal.SIGTERM) is previous  # main() puts the handler back


def test_sigterm_mid_training_then_the_same_command_resumes(demo_root, tmp_path, capsys, monkeypatch):
    import keras

    class Terminate(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            os.kill(os.getpid(), signal.SIGTERM)

    original = training.callbacks
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(training, "callbacks", lambda *args, **kwargs: original(*args, **kwargs) + [Terminate()])
        _fails(capsys, _train(demo_root, out), "stopped by SIGTERM", "resume", status=143)
    assert not runs.is_run_dir(out)
    assert cli.main([str(arg) for arg in _train(demo_root, out)]) == 0
    history = runs.load_history(out)
    assert history["epoch"].tolist() == [1, 2]  # epoch 1 from before the stop, epoch 2 after it
