"""Keras backends: choosing one, the per-backend pieces in `fer_utils.backend`, models across backends.

The test process runs on one backend (`KERAS_BACKEND`, TensorFlow by default; CI runs the suite
under JAX too), so the per-backend functions are checked on that one; the other backends are
reached through subprocesses.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fer_utils import backend, demo, models

INSTALLED_BACKENDS = [name for name in backend.BACKENDS if importlib.util.find_spec(name) is not None]


def _python(code: str, env_overrides: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != backend.BACKEND_VARIABLE}
    env.update(env_overrides)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_active_backend_follows_keras_rule_without_importing_keras(tmp_path):
    code = """
        import sys
        from fer_utils import backend
        print(backend.active_backend(), "keras" in sys.modules)
    """
    (tmp_path / "configured").mkdir()
    (tmp_path / "configured" / "keras.json").write_text(json.dumps({"backend": "torch"}))
    (tmp_path / "empty").mkdir()
    cases = [
        ({"KERAS_BACKEND": "jax", "KERAS_HOME": str(tmp_path / "configured")}, "jax"),  # the variable wins
        ({"KERAS_HOME": str(tmp_path / "configured")}, "torch"),  # then keras.json
        ({"KERAS_HOME": str(tmp_path / "empty")}, "tensorflow"),  # then the default
    ]
    for env, expected in cases:
        result = _python(code, env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [expected, "False"]


def test_select_backend_sets_the_variable_before_keras_and_refuses_a_switch_after():
    other = "jax" if "jax" in INSTALLED_BACKENDS else "tensorflow"
    result = _python(f"""
        import os, sys
        from fer_utils import backend
        assert backend.select_backend({other!r}) == {other!r}
        assert os.environ["KERAS_BACKEND"] == {other!r} and "keras" not in sys.modules
        import keras
        print(keras.config.backend())
    """, {})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == other

    import keras  # this process runs Keras already

    running = keras.config.backend()
    assert backend.select_backend(running) == running
    assert backend.select_backend(None) == running
    switched = next(name for name in backend.BACKENDS if name != running)
    with pytest.raises(RuntimeError, match="Restart the kernel"):
        backend.select_backend(switched)
    with pytest.raises(ValueError, match="tensorflow, jax, torch"):
        backend.select_backend("theano")


def test_a_missing_backend_package_names_the_pip_command():
    missing = [name for name in backend.BACKENDS if name not in INSTALLED_BACKENDS]
    if not missing:
        pytest.skip("every Keras backend is installed here")
    result = _python(f"""
        from fer_utils import backend
        try:
            backend.select_backend({missing[0]!r})
        except ValueError as error:
            print(error)
    """, {})
    assert f"pip install {missing[0]}" in result.stdout


def test_devices_on_this_cpu():
    if backend.gpu_names():
        pytest.skip("this machine has a GPU")
    backend.enable_op_determinism()
    model = models.build_model("small_cnn", weights=None, augment=False)
    assert model.output_shape == (None, len(models.CLASS_NAMES))


def _feature_model_with_a_bypass():
    """Feature maps `target` of a convolution whose input also bypasses it (a residual branch).

    features = mean over positions of (a + target), so d features / d target = 1 / positions,
    whatever `a` is: the gradient must not flow into the bypass.
    """
    import keras
    from keras import layers

    inputs = keras.Input((4, 4, 3))
    branch = layers.Conv2D(2, 3, padding="same", name="branch")(inputs)
    target = layers.Conv2D(2, 3, padding="same", name="target")(branch)
    features = layers.GlobalAveragePooling2D()(layers.Add()([branch, target]))
    return keras.Model(inputs, [target, features])


def test_class_score_gradients_are_the_analytic_ones_on_this_backend():
    import keras

    feature_model = _feature_model_with_a_bypass()
    weights = np.array([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]], dtype="float32")  # (features, classes)

    def scores(features):
        return keras.ops.matmul(features, keras.ops.convert_to_tensor(weights))

    images = np.random.default_rng(0).normal(size=(5, 4, 4, 3)).astype("float32")
    maps, gradients, classes = backend.class_score_gradients(feature_model, scores, images, np.array([0, 1, 2, 0, 1]))
    assert maps.shape == gradients.shape == (5, 4, 4, 2)
    assert classes.tolist() == [0, 1, 2, 0, 1]
    expected = np.broadcast_to(weights.T[classes][:, None, None, :] / 16.0, gradients.shape)
    np.testing.assert_allclose(gradients, expected, atol=1e-6)

    # Default: each image's own highest score, returned with the gradient.
    _, _, chosen = backend.class_score_gradients(feature_model, scores, images)
    features = keras.ops.convert_to_numpy(feature_model(images)[1])
    assert chosen.tolist() == (features @ weights).argmax(axis=1).tolist()


PREDICT_SAVED_MODEL = """
    import sys
    import numpy as np
    import keras
    from fer_utils.augmentation import random_affine_class
    random_affine_class()  # registers the project's one custom layer (augmentation), as loading.load_model does
    model = keras.models.load_model(sys.argv[1], compile=False)
    np.save(sys.argv[3], keras.ops.convert_to_numpy(model(np.load(sys.argv[2]), training=False)))
    print(keras.config.backend())
"""


@pytest.mark.parametrize("architecture", ["shipped small_cnn", "vgg16"])
def test_a_model_saved_under_one_backend_predicts_the_same_under_another(architecture, tmp_path):
    import keras

    from fer_utils import pretrained

    here = keras.config.backend()
    others = [name for name in INSTALLED_BACKENDS if name != here]
    if not others:
        pytest.skip(f"only the {here} backend is installed")
    if architecture == "vgg16":
        keras.utils.set_random_seed(3)
        model = models.build_model("vgg16", weights=None, img_size=32, head_batchnorm=True, augment=True)
    else:
        model = pretrained.load_pretrained()
    model_path, images_path = tmp_path / "model.keras", tmp_path / "faces.npy"
    model.save(model_path)
    faces = demo.draw_faces(64, seed=5).astype("float32")
    np.save(images_path, faces)
    expected = keras.ops.convert_to_numpy(model(faces, training=False))
    assert expected.shape == (64, len(models.CLASS_NAMES))

    for other in others:
        output_path = tmp_path / f"{other}.npy"
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(PREDICT_SAVED_MODEL), str(model_path), str(images_path),
             str(output_path)],
            env={**os.environ, backend.BACKEND_VARIABLE: other, "TF_CPP_MIN_LOG_LEVEL": "3"},
            capture_output=True, text=True, timeout=600,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.split()[-1] == other
        difference = np.abs(np.load(output_path) - expected).max()
        assert difference <= 1e-4, f"{architecture}: {here} -> {other} differs by {difference:.2e}"


def test_the_command_line_takes_a_backend(tmp_path, capsys):
    from fer_utils import cli

    other = "jax" if "jax" in INSTALLED_BACKENDS else "tensorflow"
    result = _python(f"""
        from fer_utils import cli
        status = cli.main(["--backend", {other!r}, "demo-data", {str(tmp_path / "demo")!r}, "--per-class", "6"])
        import keras
        print(status, keras.config.backend())
    """, {})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["0", other]

    import keras

    switched = next(name for name in backend.BACKENDS if name != keras.config.backend())
    assert cli.main(["--backend", switched, "demo-data", str(tmp_path / "other")]) == 2
    assert "Restart the kernel" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
