"""tools/test_stack.py: which test files each platform stack runs (`make test-stacks`)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import test_stack  # noqa: E402  (tools/ is no package)


def stack_with_pins(tmp_path, name, lines):
    constraints = tmp_path / f"{name}.txt"
    constraints.write_text("# pins\n" + "\n".join(lines) + "\n")
    return test_stack.Stack(name, constraints, tmp_path / name, tmp_path / f"{name}.log")


def test_kaggle_leaves_the_keras_only_tests_to_colab_which_pins_the_same_tensorflow_and_keras():
    colab, kaggle = test_stack.Stack.named("colab"), test_stack.Stack.named("kaggle")
    colab_pins, kaggle_pins = test_stack.pins(colab.constraints), test_stack.pins(kaggle.constraints)
    assert {name: colab_pins[name] for name in test_stack.KERAS_PACKAGES} == \
        {name: kaggle_pins[name] for name in test_stack.KERAS_PACKAGES}
    deselected = test_stack.deselected_tests([colab, kaggle])
    assert deselected["colab"] == test_stack.TOOLING_TESTS
    assert deselected["kaggle"] == test_stack.TOOLING_TESTS + test_stack.KERAS_ONLY_TESTS + test_stack.KERAS_ONLY_NOTEBOOKS
    # Alone, a stack runs everything but the tooling tests.
    assert test_stack.deselected_tests([kaggle]) == {"kaggle": test_stack.TOOLING_TESTS}


def test_a_stack_with_another_keras_runs_the_keras_only_tests_itself(tmp_path):
    first = stack_with_pins(tmp_path, "first", ["tensorflow==2.20.0", "keras==3.13.2", "numpy==2.1.3"])
    other_keras = stack_with_pins(tmp_path, "other", ["tensorflow==2.20.0  # comment", "keras==3.14.0"])
    same = stack_with_pins(tmp_path, "same", ["keras==3.13.2", "tensorflow==2.20.0", "numpy==2.0.2"])
    deselected = test_stack.deselected_tests([first, other_keras, same])
    assert deselected == {
        "first": test_stack.TOOLING_TESTS,
        "other": test_stack.TOOLING_TESTS,
        "same": test_stack.TOOLING_TESTS + test_stack.KERAS_ONLY_TESTS + test_stack.KERAS_ONLY_NOTEBOOKS,
    }
    assert test_stack.pins(other_keras.constraints) == {"tensorflow": "2.20.0", "keras": "3.14.0"}


@pytest.mark.parametrize("name", test_stack.TOOLING_TESTS + test_stack.KERAS_ONLY_TESTS + test_stack.KERAS_ONLY_NOTEBOOKS)
def test_every_deselected_test_file_exists(name):
    # A renamed file would otherwise be run everywhere (or its successor nowhere) without notice.
    assert (ROOT / name).is_file()
