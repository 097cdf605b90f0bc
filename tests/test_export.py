"""Exports (fer_utils.export and `python -m fer_utils export`): each format, read by its own runtime, gives Keras's probabilities.

The converters and runtimes are the `export` extra; where one is missing (the platform stacks do not
install the extra) the tests that need it are skipped.
"""

import importlib.util

import numpy as np
import pytest

from fer_utils import CLASS_NAMES, demo, export, files
from fer_utils.cli import main

# format -> (converter modules, runtime module) needed beyond TensorFlow.
NEEDS = {"onnx": (("tf2onnx", "onnx"), "onnxruntime"), "litert": ((), "ai_edge_litert"), "saved_model": ((), "tensorflow")}
FILE_NAMES = {"onnx": "model.onnx", "litert": "model.tflite", "saved_model": "saved_model"}
TOLERANCE = 1e-4


def _on_tensorflow() -> bool:
    import keras

    return keras.config.backend() == "tensorflow"


def _require_tensorflow():
    if not _on_tensorflow():
        pytest.skip("exports are written on Keras's TensorFlow backend (test_export_on_another_backend_says_how)")


def _skip_without(format):
    _require_tensorflow()
    converters, runtime = NEEDS[format]
    for module in (*converters, runtime):
        pytest.importorskip(module)


@pytest.fixture(scope="module")
def model():
    """A randomly initialised small_cnn with its augmentation layers (which must stay out of the export)."""
    from fer_utils import models

    return models.build_model("small_cnn", weights=None, seed=0)


@pytest.fixture(scope="module")
def faces():
    return demo.draw_faces(64, seed=1)


@pytest.fixture(scope="module")
def keras_probabilities(model, faces):
    return model.predict(faces, batch_size=64, verbose=0)


@pytest.fixture(scope="module")
def exports(model, tmp_path_factory):
    """Lazily written exports of `model`, one per format, shared by the module's tests."""
    folder = tmp_path_factory.mktemp("exports")
    written = {}

    def get(format):
        _skip_without(format)
        if format not in written:
            written[format] = export.export_model(model, folder / FILE_NAMES[format], format)
        return written[format]

    return get


@pytest.mark.parametrize("format", export.FORMATS)
def test_each_export_gives_the_keras_probabilities_with_its_own_runtime(format, exports, faces, keras_probabilities):
    path = exports(format)
    predict = export.load_exported(path, format, threads=1)
    probabilities = predict(faces)
    assert probabilities.shape == (64, len(CLASS_NAMES))
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert np.max(np.abs(probabilities - keras_probabilities)) <= TOLERANCE
    # Another batch size through the same loaded export (LiteRT resizes its input tensor).
    assert np.max(np.abs(predict(faces[:3, ..., 0]) - keras_probabilities[:3])) <= TOLERANCE


def test_onnx_file_has_one_pixel_input_with_a_free_batch_and_no_random_ops(exports):
    path = exports("onnx")
    import onnx
    import onnxruntime

    graph = onnx.load(str(path)).graph
    assert not [node.op_type for node in graph.node if "Random" in node.op_type]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    assert model_input.name == "pixels" and session.get_outputs()[0].name == "probabilities"
    assert model_input.type == "tensor(float)"
    assert model_input.shape[1:] == [48, 48, 1] and not isinstance(model_input.shape[0], int)
    assert session.get_outputs()[0].shape[1] == len(CLASS_NAMES)


def test_onnx_keeps_fixed_normalization_constants_inside_the_graph(tmp_path):
    # VGG16 and ResNet50 preprocess with a Normalization layer of fixed mean and variance; Keras's
    # own ONNX exporter leaves those as extra, unfed graph inputs.
    _skip_without("onnx")
    import keras

    pixels = keras.Input((8, 8, 1), name="pixels")
    x = keras.layers.Concatenate(name="gray_to_rgb")([pixels, pixels, pixels])
    x = keras.layers.Normalization(mean=[103.9, 116.8, 123.7], variance=[1.0, 1.0, 1.0], name="preprocess")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(3, activation="softmax", kernel_initializer="glorot_uniform")(keras.layers.Rescaling(0.01)(x))
    model = keras.Model(pixels, outputs)
    path = export.export_model(model, tmp_path / "normalized.onnx", "onnx")
    import onnxruntime

    assert [i.name for i in onnxruntime.InferenceSession(str(path)).get_inputs()] == ["pixels"]
    images = np.random.default_rng(0).uniform(0, 255, (5, 8, 8, 1)).astype(np.float32)
    assert export.max_difference(model, export.load_exported(path, "onnx"), images) <= TOLERANCE


def test_litert_file_read_by_the_interpreter_takes_raw_48x48_pixels(exports, faces, keras_probabilities):
    path = exports("litert")
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    details = interpreter.get_input_details()[0]
    assert list(details["shape_signature"]) == [-1, 48, 48, 1]
    assert details["dtype"] == np.float32
    interpreter.resize_tensor_input(details["index"], [8, 48, 48, 1])
    interpreter.allocate_tensors()
    interpreter.set_tensor(details["index"], faces[:8])
    interpreter.invoke()
    output = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert np.max(np.abs(output - keras_probabilities[:8])) <= TOLERANCE


def test_saved_model_folder_serves_through_tfsmlayer(exports, faces, keras_probabilities):
    path = exports("saved_model")
    import keras

    assert (path / "saved_model.pb").is_file()
    layer = keras.layers.TFSMLayer(str(path), call_endpoint="serve")
    output = keras.ops.convert_to_numpy(layer(faces))
    assert np.max(np.abs(output - keras_probabilities)) <= TOLERANCE


def test_max_difference_measures_the_largest_gap(model, faces, keras_probabilities):
    shifted = lambda images: model.predict(images, verbose=0) + np.float32(0.25)  # noqa: E731
    assert export.max_difference(model, shifted, faces) == pytest.approx(0.25, abs=1e-6)


def test_unknown_format_is_a_value_error_listing_the_formats(model, tmp_path):
    with pytest.raises(ValueError, match="onnx, litert, saved_model"):
        export.export_model(model, tmp_path / "model.pt", "torchscript")
    with pytest.raises(ValueError, match="Unknown export format"):
        export.load_exported(tmp_path / "model.pt", "torchscript")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "format, name, message",
    [("onnx", "model.tflite", "ending in .onnx"), ("litert", "model", "ending in .tflite"), ("onnx", "folder.onnx", "is a folder")],
)
def test_export_path_must_fit_the_format(format, name, message, tmp_path):
    if name == "folder.onnx":
        (tmp_path / name).mkdir()
    with pytest.raises(ValueError, match=message):
        export.check_export_path(tmp_path / name, format)


def test_an_existing_export_is_replaced_only_with_overwrite(tmp_path):
    existing = tmp_path / "model.onnx"
    existing.write_bytes(b"old")
    files.record_output(existing)  # as export_model does before it writes
    with pytest.raises(ValueError, match="--overwrite"):
        export.check_export_path(existing, "onnx")
    assert export.check_export_path(existing, "onnx", overwrite=True) == existing
    saved_model = tmp_path / "saved"
    (saved_model / "variables").mkdir(parents=True)
    (saved_model / "saved_model.pb").write_bytes(b"old")
    files.record_output(saved_model / "saved_model.pb", folder=saved_model)
    with pytest.raises(ValueError, match="earlier output"):
        export.check_export_path(saved_model, "saved_model")
    assert export.check_export_path(saved_model, "saved_model", overwrite=True) == saved_model


def test_a_target_of_other_files_is_never_replaced(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="did not write"):
        export.check_export_path(tmp_path, "saved_model", overwrite=True)
    (tmp_path / "theirs.onnx").write_bytes(b"theirs")  # not in the folder's manifest
    with pytest.raises(ValueError, match="not written by fer_utils"):
        export.check_export_path(tmp_path / "theirs.onnx", "onnx", overwrite=True)
    assert export.check_export_path(tmp_path / "empty", "saved_model") == tmp_path / "empty"


def test_missing_converter_or_runtime_names_the_pip_command(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("tf2onnx", "onnxruntime") else real_find_spec(name, *a)
    )
    with pytest.raises(ValueError, match=r"pip install tf2onnx.*\.\[export\]"):
        export.require_packages("onnx", "export")
    export.require_packages("litert", "export")  # TensorFlow writes LiteRT itself
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(ValueError, match="pip install onnxruntime"):
        export.load_exported(tmp_path / "model.onnx", "onnx")


def test_missing_export_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m fer_utils export"):
        export.load_exported(tmp_path / "model.tflite", "litert")


def test_threads_must_be_positive(tmp_path):
    (tmp_path / "model.tflite").write_bytes(b"")
    with pytest.raises(ValueError, match="threads must be at least 1"):
        export.load_exported(tmp_path / "model.tflite", "litert", threads=0)


def test_a_failed_export_leaves_no_file_behind(model, tmp_path, monkeypatch):
    import keras

    _require_tensorflow()
    def fail(self, *args, **kwargs):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(keras.Model, "export", fail)
    for format in ("litert", "saved_model"):
        with pytest.raises(RuntimeError, match="converter crashed"):
            export.export_model(model, tmp_path / FILE_NAMES[format], format)
    assert [path.name for path in tmp_path.iterdir()] == [files.MANIFEST_FILE]  # names the export, which is gone


# ---------------------------------------------------------------------------------------------
# python -m fer_utils export
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(model, tmp_path_factory):
    from fer_utils.runs import save_run

    folder = tmp_path_factory.mktemp("run") / "small"
    config = {"name": "small-random", "backbone": "small_cnn", "class_names": list(CLASS_NAMES)}
    return save_run(folder, model, config)


@pytest.mark.parametrize("format", ["onnx", "saved_model"])  # litert: the .keras file test below
def test_cli_writes_the_export_and_checks_it(format, run_dir, tmp_path, capsys):
    _skip_without(format)
    out = tmp_path / FILE_NAMES[format]
    status = main(["export", str(run_dir), "--format", format, "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 0
    assert out.is_file() if format != "saved_model" else (out / "saved_model.pb").is_file()
    assert f"Exported small-random ({run_dir}) to {out} ({format}" in printed
    assert "probabilities of angry, disgust, fear, happy, sad, surprise, neutral" in printed
    difference = float(printed.split("differ from Keras's by at most ")[1].split()[0])
    assert difference <= TOLERANCE


def test_cli_accepts_a_keras_file_and_refuses_an_existing_export(model, tmp_path, capsys):
    _skip_without("litert")
    model_file = tmp_path / "model.keras"
    model.save(model_file)
    out = tmp_path / "model.tflite"
    assert main(["export", str(model_file), "--format", "litert", "--out", str(out), "--no-check"]) == 0
    assert out.stat().st_size > 0
    assert "Check:" not in capsys.readouterr().out
    written = out.stat().st_mtime_ns
    assert main(["export", str(model_file), "--format", "litert", "--out", str(out)]) == 2
    assert "earlier output of fer_utils. Pass --overwrite" in capsys.readouterr().err
    assert out.stat().st_mtime_ns == written


def test_cli_unknown_format_is_a_usage_error(run_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(run_dir), "--format", "coreml", "--out", str(tmp_path / "model.mlmodel")])
    assert exit_info.value.code == 2
    assert "invalid choice: 'coreml'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_cli_missing_run_folder_is_one_error_line(tmp_path, capsys):
    status = main(["export", str(tmp_path / "no_such_run"), "--format", "saved_model", "--out", str(tmp_path / "saved")])
    error = capsys.readouterr().err
    assert status == 2
    assert error.startswith("error: No run folder or model file at") and error.count("\n") == 1
    assert not (tmp_path / "saved").exists()


def test_cli_wrong_suffix_fails_before_the_model_is_loaded(tmp_path, capsys):
    # The source does not exist either: the --out check comes first.
    status = main(["export", str(tmp_path / "no_such_run"), "--format", "onnx", "--out", str(tmp_path / "model.tflite")])
    assert status == 2
    assert "ending in .onnx" in capsys.readouterr().err


def test_export_on_another_backend_says_how(model, tmp_path, capsys):
    if _on_tensorflow():
        pytest.skip("this process runs the TensorFlow backend, where exports are written")
    with pytest.raises(ValueError, match="--backend tensorflow export"):
        export.export_model(model, tmp_path / "model.onnx", "onnx")
    assert list(tmp_path.iterdir()) == []
    assert main(["export", "builtin", "--format", "litert", "--out", str(tmp_path / "model.tflite")]) == 2
    assert "runs on Keras's TensorFlow backend" in capsys.readouterr().err
