"""What real (and careless) users do: damaged caches and run folders, foreign and shared --out
folders, resuming with other data, odd csv files and option values.

Every bad input must end in one line on stderr (what, where, what to do) and exit status 2, with
no traceback, and must never cost the user a file.
"""

import json
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from contract_models import tiny_contract_model
from helpers import make_split_folder, write_image

from fer_utils import CLASS_NAMES, cli, data, files, recipe, runs, training


def _fails(capsys, argv, *fragments) -> str:
    """Run the CLI, expect exit status 2 and one `error:` line holding every fragment; return it."""
    status = cli.main([str(arg) for arg in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert status == 2, err
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _train_argv(data_root, out, *extra):
    return ["train", "--backbone", "small_cnn", "--data", data_root, "--out", out, "--epochs", "1",
            "--batch-size", "32", "--augmentation", "flip=false,rotation=0,zoom=0,translation=0,contrast=0", "--quiet", *extra]


def _split(count, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 7
    images = rng.integers(0, 40, (count, 48, 48, 1)) + labels[:, None, None, None] * 30
    return data.Split(images.astype("uint8"), labels.astype("int64"))


def _small_config(**overrides):
    off = {"flip": False, "rotation": 0.0, "zoom": 0.0, "translation": 0.0, "contrast": 0.0}
    values = dict(epochs=2, batch_size=14, augmentation=off, patience=0)
    values.update(overrides)
    return recipe.default_settings("small_cnn", **values)


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    """A small_cnn run killed after its first of two epochs; tests work on copies (`_copy`)."""
    import keras

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt("simulated kill")

    original = training.callbacks
    run_dir = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "callbacks", lambda *args, **kwargs: original(*args, **kwargs) + [Interrupt()])
        with pytest.raises(KeyboardInterrupt):
            recipe.train((_split(42), _split(21, seed=1)), _small_config(), run_dir, progress=False)
    return run_dir


def _copy(run_dir, destination):
    import shutil

    return Path(shutil.copytree(run_dir, destination))


@pytest.fixture(scope="module")
def other_demo(tmp_path_factory):
    """A second, different demo dataset (other seed and size) for 'resume with other data'."""
    from fer_utils.demo import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("other-demo") / "fer", per_class=8, seed=3)


# =============================================================================================
# Foreign --out folders (nothing of the user's is overwritten or deleted)
# =============================================================================================
@pytest.mark.parametrize("user_file", ["config.json", "history.csv", "class_names.json", "backup/notes.txt"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_train_refuses_a_folder_that_is_not_a_run_folder(demo_root, tmp_path, capsys, user_file, overwrite):
    out = tmp_path / "u"
    target = out / user_file
    target.parent.mkdir(parents=True)
    target.write_text('{"my": 1}\n')
    line = _fails(capsys, _train_argv(demo_root, out, *(["--overwrite"] if overwrite else [])),
                  str(out), "not a fer_utils run folder", user_file.split("/")[0])
    assert "new or empty folder" in line
    assert target.read_text() == '{"my": 1}\n'
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == sorted(
        {user_file, *([user_file.split("/")[0]] if "/" in user_file else [])}
    )


def test_an_empty_folder_with_file_browser_litter_is_accepted(demo_root, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".DS_Store").write_bytes(b"\0")
    assert cli.main([str(arg) for arg in _train_argv(demo_root, out)]) == 0
    assert runs.is_run_dir(out) and (out / runs.RUN_MARKER_FILE).is_file()


def test_train_into_a_file_is_refused(demo_root, tmp_path, capsys):
    out = tmp_path / "photo.jpg"
    out.write_bytes(b"mine")
    _fails(capsys, _train_argv(demo_root, out), "is a file, not a folder")
    assert out.read_bytes() == b"mine"


def test_overwrite_deletes_only_the_files_training_wrote(interrupted_run, tmp_path):
    run_dir = _copy(interrupted_run, tmp_path / "run")
    assert (run_dir / runs.RUN_MARKER_FILE).is_file()
    mine = [run_dir / "notes.txt", run_dir / "backup" / "mine.txt", run_dir / "backup" / "end_to_end" / "mine.npz"]
    for path in mine:
        path.write_text("the user's")
    stale = run_dir / "backup" / "end_to_end" / "history.csv"
    stale.write_text("epoch,loss\n0,99\n")  # the discarded run's history must not leak into the new one
    recipe.train((_split(42), _split(21, seed=1)), _small_config(), run_dir, progress=False, overwrite=True)
    assert runs.is_run_dir(run_dir)
    assert all(path.read_text() == "the user's" for path in mine)
    assert pd.read_csv(run_dir / runs.HISTORY_FILE)["epoch"].tolist() == [1, 2]


@pytest.mark.parametrize("damaged", ["backup/run.json", "backup/end_to_end/keras_backup/latest.weights.h5",
                                     "backup/end_to_end/keras_backup/training_metadata.json"])
def test_a_damaged_checkpoint_is_named_with_the_way_out(interrupted_run, tmp_path, damaged):
    run_dir = _copy(interrupted_run, tmp_path / "run")
    path = run_dir / damaged
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ValueError, match="--overwrite") as error:
        recipe.train((_split(42), _split(21, seed=1)), _small_config(), run_dir, progress=False)
    assert str(path) in str(error.value)


def test_a_run_folder_from_before_markers_is_still_recognised_and_orphans_cleared(tmp_path):
    train, val = _split(42), _split(21, seed=1)
    run_dir = recipe.train((train, val), _small_config(epochs=1), tmp_path / "run", progress=False)
    (run_dir / runs.RUN_MARKER_FILE).unlink()
    # What a save killed half-way leaves: a uniquely named hidden temporary.
    orphan = files.temporary_path(run_dir / runs.MODEL_FILE, suffix=files.TEMPORARY_SUFFIX + ".keras")
    assert files.is_temporary_name(orphan.name) and orphan.name != ".model.tmp.keras"
    assert recipe.train((train, val), _small_config(epochs=1), run_dir, progress=False) == run_dir
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == [runs.RUN_MARKER_FILE]


# =============================================================================================
# Resuming with other data
# =============================================================================================
def test_an_interrupted_run_does_not_resume_on_other_data(interrupted_run, tmp_path):
    run_dir = _copy(interrupted_run, tmp_path / "run")
    other_train, other_val = _split(28, seed=5), _split(14, seed=6)
    with pytest.raises(ValueError, match="trained on other data") as error:
        recipe.train((other_train, other_val), _small_config(), run_dir, progress=False)
    message = str(error.value)
    stored = json.loads((run_dir / "backup" / "run.json").read_text())["data"]
    assert stored in message and training.array_fingerprint(other_train, other_val) in message
    assert "--overwrite" in message and "same --data" in message
    # The original data still resumes.
    recipe.train((_split(42), _split(21, seed=1)), _small_config(), run_dir, progress=False)
    assert pd.read_csv(run_dir / runs.HISTORY_FILE)["epoch"].tolist() == [1, 2]


def test_a_finished_run_given_other_data_is_refused_not_skipped(demo_root, other_demo, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main([str(arg) for arg in _train_argv(demo_root, out)]) == 0
    capsys.readouterr()
    config_before = (out / runs.CONFIG_FILE).read_text()
    _fails(capsys, _train_argv(other_demo, out), str(out), "trained on other data", "--overwrite")
    assert (out / runs.CONFIG_FILE).read_text() == config_before
    # The same data again: nothing to do, exit 0.
    assert cli.main([str(arg) for arg in _train_argv(demo_root, out)]) == 0


# =============================================================================================
# A failed command leaves nothing that blocks the corrected one
# =============================================================================================
TYPOS = [
    ["--backbone", "vgg16", "--weights", "/no/such/weights.h5", "--epochs-head", "1"],
    ["--backbone", "small_cnn", "--img-size", "8", "--epochs", "1"],
    ["--backbone", "small_cnn", "--weights", "imagenet", "--epochs", "1"],
    ["--backbone", "small_cnn", "--val-fraction", "1.5", "--epochs", "1"],
]


def test_a_typo_writes_nothing_and_the_corrected_command_runs(demo_root, tmp_path, capsys):
    out = tmp_path / "run"
    for typo in TYPOS:
        _fails(capsys, ["train", "--data", demo_root, "--out", out, "--quiet", *typo])
        assert not out.exists(), typo
    assert cli.main([str(arg) for arg in _train_argv(demo_root, out)]) == 0


def test_a_failed_model_build_leaves_no_training_state(demo_root, tmp_path, monkeypatch, capsys):
    from keras.src.utils import file_utils

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure -- no network")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    out = tmp_path / "run"
    _fails(capsys, ["train", "--backbone", "vgg16", "--data", demo_root, "--out", out, "--img-size", "32",
                    "--epochs-head", "1", "--quiet"], "--weights none")
    # No epoch ran, so the corrected command (other weights) is not refused as "other settings".
    assert cli.main([str(arg) for arg in _train_argv(demo_root, out)]) == 0


# =============================================================================================
# predict never overwrites its input (the output rule: tests/test_output_rule.py)
# =============================================================================================
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    config = {"name": "tiny", "class_names": list(CLASS_NAMES), "wall_time_s": {"total": 1.0}, "n_params": 10}
    history = pd.DataFrame({"epoch": [1, 2], "phase": ["head"] * 2, "loss": [1.9, 1.7], "accuracy": [0.2, 0.3],
                            "val_loss": [1.9, 1.8], "val_accuracy": [0.2, 0.25]})
    return runs.save_run(tmp_path_factory.mktemp("tiny") / "run", tiny_contract_model(), config, history,
                         {"accuracy": 0.3})


@pytest.mark.parametrize("spelling", ["same", "dotted", "hardlink"])
def test_predict_refuses_an_out_path_that_is_its_input(tiny_run, tmp_path, capsys, spelling):
    photo = tmp_path / "photos" / "me.png"
    write_image(photo, np.full((64, 64, 3), 120, np.uint8))
    original = photo.read_bytes()
    out = {"same": photo, "dotted": tmp_path / "photos" / ".." / "photos" / "me.png", "hardlink": tmp_path / "link.png"}[spelling]
    if spelling == "hardlink":
        os.link(photo, out)
    for extra in ([], ["--overwrite"]):  # the input file is the user's: never replaced, whatever the flags
        _fails(capsys, ["predict", "--model", tiny_run, photo, "--out", out, *extra], "refusing to write over it",
               "Choose another file name")
    assert photo.read_bytes() == original


def test_predict_refuses_an_out_path_that_is_its_input_video(tiny_run, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"the user's only copy")
    _fails(capsys, ["predict", "--model", tiny_run, video, "--out", video, "--overwrite"], "refusing to write over it")
    assert video.read_bytes() == b"the user's only copy"


# =============================================================================================
# Damaged caches are misses: warned once, decoded again, replaced
# =============================================================================================
def _damage(path, kind):
    raw = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "bit_flipped":
        flipped = bytearray(raw)
        flipped[len(raw) // 2] ^= 0x40
        path.write_bytes(bytes(flipped))
    elif kind == "not_a_zip":
        path.write_bytes(b"\0" * 100)
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        with np.load(path) as stored:
            arrays = {name: stored[name] for name in stored.files}
        if kind == "missing_key":
            del arrays["labels"]
        elif kind == "wrong_shape":
            arrays["images"] = arrays["images"][:, :24]
        elif kind == "wrong_dtype":
            arrays["images"] = arrays["images"].astype(np.float32)
        elif kind == "label_out_of_range":
            arrays["labels"] = arrays["labels"] + 7
        elif kind == "other_labels":
            arrays["labels"] = arrays["labels"][::-1].copy()
        elif kind == "pickled_object":
            arrays["labels"] = np.array([{"x": 1}] * len(arrays["labels"]), dtype=object)
        with open(path, "wb") as stream:
            np.savez(stream, **arrays)


DAMAGE_KINDS = ["truncated", "bit_flipped", "not_a_zip", "empty", "missing_key", "wrong_shape", "wrong_dtype",
                "label_out_of_range", "other_labels", "pickled_object"]


@pytest.mark.parametrize("kind", DAMAGE_KINDS)
def test_a_damaged_split_cache_is_decoded_again_and_replaced(tmp_path, kind):
    import warnings

    root = make_split_folder(tmp_path / "split", per_class=2)
    cache = tmp_path / "cache"
    fresh = data.load_split(root, cache=cache, progress=False)
    [cache_file] = cache.glob("*.npz")
    _damage(cache_file, kind)
    with pytest.warns(UserWarning, match="damaged cache file") as caught:
        again = data.load_split(root, cache=cache, progress=False)
    assert len([w for w in caught if "damaged cache" in str(w.message)]) == 1
    assert np.array_equal(again.images, fresh.images) and np.array_equal(again.labels, fresh.labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the replaced file reads cleanly: no second warning
        assert np.array_equal(data.load_split(root, cache=cache, progress=False).images, fresh.images)


@pytest.mark.parametrize("kind", ["bit_flipped", "missing_key", "wrong_shape"])
def test_a_damaged_csv_cache_is_decoded_again(tmp_path, kind):
    rows = [(label, " ".join([str(label * 30)] * 2304), usage) for label in range(7) for usage in ("Training", "PublicTest")]
    csv_path = tmp_path / "fer2013.csv"
    csv_path.write_text("emotion,pixels,Usage\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
    cache = tmp_path / "cache"
    fresh = data.load_csv(csv_path, cache=cache, progress=False)
    [cache_file] = cache.glob("*.npz")
    _damage(cache_file, kind)
    with pytest.warns(UserWarning, match="damaged cache file"):
        again = data.load_csv(csv_path, cache=cache, progress=False)
    assert np.array_equal(again["train"].images, fresh["train"].images)
    assert np.array_equal(again["test"].labels, fresh["test"].labels)


def test_cli_works_through_a_damaged_cache(demo_root, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FER_CACHE_DIR", str(cache))
    assert cli.main(["info", str(demo_root)]) == 0
    for cache_file in cache.glob("*.npz"):
        _damage(cache_file, "truncated")
    with pytest.warns(UserWarning, match="damaged cache file"):
        assert cli.main(["info", str(demo_root)]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_cache_writes_clear_orphaned_temporaries_and_keep_fresh_ones(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    orphan, in_progress = cache / ".split-abc.npz.x1y2.tmp", cache / ".split-def.npz.z3w4.tmp"
    orphan.write_bytes(b"killed half-way")
    in_progress.write_bytes(b"another process is writing")
    old = time.time() - 2 * 3600
    os.utime(orphan, (old, old))
    data.load_split(make_split_folder(tmp_path / "split", per_class=1), cache=cache, progress=False)
    assert not orphan.exists() and in_progress.exists()
    assert [p.name for p in cache.glob("*.npz")] and not [p for p in cache.iterdir() if p.name.endswith(".tmp") and p != in_progress]


# =============================================================================================
# Damaged or hand-edited run folders: one line naming the file and the field
# =============================================================================================
def _garbage_keras(path):
    path.write_bytes(b"PK\x03\x04 not really a zip")


def _unknown_layer_keras(path):
    """Rename a layer class inside model.keras to one Keras does not know."""
    with zipfile.ZipFile(path) as source:
        members = {name: source.read(name) for name in source.namelist()}
    members["config.json"] = members["config.json"].replace(b'"class_name": "Dense"', b'"class_name": "NoSuchLayer"')
    with zipfile.ZipFile(path, "w") as target:
        for name, content in members.items():
            target.writestr(name, content)


RUN_DAMAGE = {
    # case: (file, new content or a function of the path, fragments the message must hold)
    "config_not_json": (runs.CONFIG_FILE, "{", ["config.json", "not valid JSON"]),
    "config_a_list": (runs.CONFIG_FILE, "[1, 2]", ["config.json", "JSON object", "list"]),
    "config_name_a_number": (runs.CONFIG_FILE, '{"name": 5}', ["config.json", "'name'"]),
    "config_n_params_text": (runs.CONFIG_FILE, '{"n_params": "many"}', ["config.json", "'n_params'"]),
    "config_negative_wall_time": (runs.CONFIG_FILE, '{"wall_time_s": {"head": -3}}', ["config.json", "wall_time_s.head"]),
    "config_class_names_a_string": (runs.CONFIG_FILE, '{"class_names": "angry"}', ["config.json", "'class_names'"]),
    "class_names_an_object": (runs.CLASS_NAMES_FILE, '{"angry": 0}', ["class_names.json", "list of class names"]),
    "class_names_numbers": (runs.CLASS_NAMES_FILE, "[0, 1, 2, 3, 4, 5, 6]", ["class_names.json", "list of class names"]),
    "class_names_duplicated": (runs.CLASS_NAMES_FILE, json.dumps(["angry"] * 7), ["class_names.json", "twice"]),
    "class_names_too_few": (runs.CLASS_NAMES_FILE, json.dumps(list(CLASS_NAMES[:6])), ["7 outputs", "6 classes"]),
    "class_names_utf16": (runs.CLASS_NAMES_FILE, json.dumps(list(CLASS_NAMES)).encode("utf-16"), ["class_names.json", "not valid JSON"]),
    "history_text_value": (runs.HISTORY_FILE, "epoch,loss,val_accuracy\n1,1.5,abc\n", ["history.csv", "row 2", "'val_accuracy'"]),
    "history_accuracy_out_of_range": (runs.HISTORY_FILE, "epoch,accuracy\n1,7.5\n", ["history.csv", "'accuracy'", "[0, 1]"]),
    "history_negative_epoch": (runs.HISTORY_FILE, "epoch,loss\n-1,1.0\n", ["history.csv", "'epoch'"]),
    "history_binary": (runs.HISTORY_FILE, b"\xff\xfe\x00\x01\x80garbage", ["history.csv", "not a readable csv"]),
    "history_ragged": (runs.HISTORY_FILE, 'epoch,loss\n1,2\n3,4,5,6\n', ["history.csv", "not a readable csv"]),
    "val_metrics_accuracy_above_one": (runs.VAL_METRICS_FILE, '{"accuracy": 2.0}', ["val_metrics.json", "'accuracy'"]),
    "val_metrics_accuracy_text": (runs.VAL_METRICS_FILE, '{"accuracy": "high"}', ["val_metrics.json", "'accuracy'"]),
    "val_metrics_a_list": (runs.VAL_METRICS_FILE, "[]", ["val_metrics.json", "JSON object"]),
    "model_garbage": (runs.MODEL_FILE, _garbage_keras, ["model.keras", "not a readable Keras model"]),
    "model_truncated": (runs.MODEL_FILE, lambda p: p.write_bytes(p.read_bytes()[:500]), ["model.keras", "not a readable Keras model"]),
    "model_unknown_layer": (runs.MODEL_FILE, _unknown_layer_keras, ["model.keras", "not a readable Keras model", "NoSuchLayer"]),
}


def _damaged_copy(tiny_run, tmp_path, case):
    import shutil

    run_dir = tmp_path / "damaged"
    shutil.copytree(tiny_run, run_dir)
    name, content, fragments = RUN_DAMAGE[case]
    if callable(content):
        content(run_dir / name)
    else:
        (run_dir / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return run_dir, fragments


@pytest.mark.parametrize("case", sorted(RUN_DAMAGE))
def test_evaluate_names_the_damaged_run_file(tiny_run, demo_root, tmp_path, capsys, case):
    run_dir, fragments = _damaged_copy(tiny_run, tmp_path, case)
    _fails(capsys, ["evaluate", "--model", run_dir, "--data", demo_root, "--n-boot", "0"], str(run_dir), *fragments)


@pytest.mark.parametrize("case", ["config_a_list", "class_names_numbers", "history_text_value",
                                  "val_metrics_accuracy_text", "model_unknown_layer"])
def test_compare_and_predict_name_the_damaged_run_file(tiny_run, demo_root, tmp_path, capsys, case):
    run_dir, fragments = _damaged_copy(tiny_run, tmp_path, case)
    _fails(capsys, ["compare", tiny_run, run_dir, "--data", demo_root, "--out", tmp_path / "cmp", "--n-boot", "0",
                    "--no-figures"], str(run_dir), *fragments)
    photo = tmp_path / "photo.png"
    write_image(photo, np.full((64, 64, 3), 120, np.uint8))
    _fails(capsys, ["predict", "--model", run_dir, photo], str(run_dir), *fragments)


def test_best_run_names_a_damaged_val_metrics_file(tiny_run, tmp_path):
    run_dir, _ = _damaged_copy(tiny_run, tmp_path, "val_metrics_accuracy_text")
    with pytest.raises(ValueError, match="val_metrics.json"):
        runs.best_run(tmp_path)


# =============================================================================================
# Numeric options: one table, every command
# =============================================================================================
@pytest.mark.parametrize("argv, option", [
    (["evaluate", "--model", "m", "--data", "d", "--batch-size", "0"], "--batch-size"),
    (["evaluate", "--model", "m", "--data", "d", "--n-boot", "-1"], "--n-boot"),
    (["compare", "r", "--data", "d", "--out", "o", "--batch-size", "0"], "--batch-size"),
    (["compare", "r", "--data", "d", "--out", "o", "--gradcam-images", "-2"], "--gradcam-images"),
    (["train", "--backbone", "small_cnn", "--data", "d", "--out", "o", "--learning-rate", "nan"], "--learning-rate"),
    (["train", "--backbone", "small_cnn", "--data", "d", "--out", "o", "--dropout", "1"], "--dropout"),
    (["train", "--backbone", "small_cnn", "--data", "d", "--out", "o", "--max-minutes", "-5"], "--max-minutes"),
    (["predict", "--model", "m", "x.png", "--every-n", "0"], "--every-n"),
    (["demo-data", "o", "--per-class", "0"], "--per-class"),
    (["demo-data", "o", "--seed", "-1"], "--seed"),
])
def test_out_of_range_numeric_options_are_one_line(capsys, tmp_path, monkeypatch, argv, option):
    monkeypatch.chdir(tmp_path)  # nothing may be written, but if it were, not into the repository
    _fails(capsys, argv, option)
    assert list(tmp_path.iterdir()) == []


def test_every_numeric_option_has_a_bound():
    """The train options are checked by recipe.check_settings (each a Settings field), the others by the table."""
    import dataclasses

    parser = cli.build_parser()
    subparsers = next(action for action in parser._actions if action.dest == "command")
    numeric = {
        (name, action.dest)
        for name, sub in subparsers.choices.items()
        for action in sub._actions
        if action.type in (int, float)
    }
    others = {dest for name, dest in numeric if name != "train"}
    assert others <= set(cli.NUMERIC_OPTIONS), sorted(others - set(cli.NUMERIC_OPTIONS))
    settings = {field.name for field in dataclasses.fields(training.Settings)}
    assert {dest for name, dest in numeric if name == "train"} <= settings


# =============================================================================================
# csv variants
# =============================================================================================
def _csv_with(tmp_path, pixels):
    path = tmp_path / "fer2013.csv"
    good = " ".join(["1"] * 2304)
    path.write_text(f"emotion,pixels,Usage\n0,{good},Training\n1,{pixels},Training\n")
    return path


@pytest.mark.parametrize("token", ["99999999999999999999", "abc", "1.5", "0x10"])
def test_a_bad_csv_pixel_value_names_the_file_and_row(tmp_path, capsys, token):
    path = _csv_with(tmp_path, " ".join(["2"] * 2303 + [token]))
    with pytest.raises(ValueError, match=rf"row 3: pixel value '{token[:20]}'"):
        data.load_csv(path, cache=False, progress=False)
    _fails(capsys, ["info", path, "--no-cache"], str(path), "row 3", token[:20])


@pytest.mark.parametrize("content, fragment", [
    (b"", "is empty"),
    ("emotion,pixels,Usage\n0,1 2,Training\n".encode("utf-16"), "Cannot read"),
    (bytes(range(256)) * 8, "Cannot read"),
    (b"emotion,pixels,Usage\n", "no rows"),
])
def test_unreadable_csv_files_are_named(tmp_path, capsys, content, fragment):
    path = tmp_path / "fer2013.csv"
    path.write_bytes(content)
    line = _fails(capsys, ["info", path, "--no-cache"], str(path))
    assert fragment in line or "has columns" in line


# =============================================================================================
# System files inside a split, artifacts' names and modes
# =============================================================================================
def test_system_files_in_a_split_are_skipped_and_counted(tmp_path):
    root = make_split_folder(tmp_path / "train", per_class=1)
    (root / "Thumbs.db").write_bytes(b"\0\1")
    (root / "happy" / "desktop.ini").write_text("[.ShellClassInfo]")
    (root / "__MACOSX").mkdir()
    (root / "__MACOSX" / "._img.png").write_bytes(b"\0")
    with pytest.warns(UserWarning, match=r"skipped 3 system file\(s\)"):
        split = data.load_split(root, cache=False, progress=False)
    assert len(split) == 7
    before = data.dataset_fingerprint(root)
    (root / "sad" / "Thumbs.db").write_bytes(b"\0")
    assert data.dataset_fingerprint(root) == before


def test_artifacts_share_one_mode_and_model_saves_leave_no_temporary(tmp_path):
    run_dir = runs.save_run(tmp_path / "run", tiny_contract_model(), {"class_names": list(CLASS_NAMES)})
    modes = {path.name: path.stat().st_mode & 0o777 for path in run_dir.iterdir()}
    assert set(modes.values()) == {files.FILE_MODE}, modes
    assert sorted(modes) == sorted(runs.ARTIFACT_FILES)
    cache = tmp_path / "cache"
    data.load_split(make_split_folder(tmp_path / "split", per_class=1), cache=cache, progress=False)
    assert {path.stat().st_mode & 0o777 for path in cache.iterdir()} == {files.FILE_MODE}
