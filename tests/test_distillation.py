"""Distillation targets and the checks on teachers (`fer_utils.distillation`)."""

import numpy as np
import pytest

from fer_utils import data, distillation, runs, training


def _training_data(validation="10% of train, stratified, seed 42", val_size=4):
    labels = np.arange(14) % 7
    train = data.Split(np.zeros((14, 48, 48, 1), "uint8"), labels.astype("int64"))
    provenance = {"validation": validation, "train_size": 14, "val_size": val_size,
                  "train_class_counts": [2] * 7}
    return training.TrainingData(train, data.Split(np.zeros((4, 48, 48, 1), "uint8"), labels[:4]), provenance)


def _teacher(class_names=data.CLASS_NAMES, **provenance):
    recorded = {"validation": "10% of train, stratified, seed 42", "train_size": 14, "val_size": 4,
                "train_class_counts": [2] * 7, **provenance}
    return runs.Run(path=None, model=None, config={"data": recorded}, history=None,
                    class_names=tuple(class_names), val_metrics={})


def test_blended_targets_mix_the_teachers_and_the_labels():
    labels = np.array([0, 3])
    teacher = np.full((2, 7), 1 / 7)
    targets = distillation.blended_targets(labels, teacher, 0.7, 7)
    assert targets.dtype == np.float32 and targets.shape == (2, 7)
    np.testing.assert_allclose(targets[0, 0], 0.3 + 0.1, atol=1e-6)
    np.testing.assert_allclose(targets[1, 0], 0.1, atol=1e-6)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(distillation.blended_targets(labels, teacher, 0.0, 7), np.eye(7)[labels])
    with pytest.raises(ValueError, match=r"teacher_weight must be in \[0, 1\]"):
        distillation.blended_targets(labels, teacher, 1.5, 7)
    with pytest.raises(ValueError, match=r"shape \(2, 7\)"):
        distillation.blended_targets(labels, teacher[:1], 0.5, 7)


def test_a_teacher_of_the_same_split_passes():
    distillation.check_teacher("t", _teacher(), _training_data())


@pytest.mark.parametrize("teacher, message", [
    (_teacher(val_size=5), "val_size 5, this run has 4: it is not the dataset"),
    (_teacher(validation="val/ split folder"), "may have trained on this run's validation images"),
    (_teacher(train_class_counts=None), "records no training split"),
    (_teacher(class_names=tuple(reversed(data.CLASS_NAMES))), "same classes in the same order"),
])
def test_a_teacher_that_could_have_seen_the_validation_images_is_refused(teacher, message):
    with pytest.raises(ValueError, match=message):
        distillation.check_teacher("t", teacher, _training_data())


def test_a_teacher_that_started_from_a_model_of_another_split_is_refused():
    other = {"validation": "val/ split folder", "train_size": 14, "val_size": 4, "train_class_counts": [2] * 7}
    teacher = _teacher()
    teacher.config["lineage"] = [{"source": "runs/first", "split": other}]
    with pytest.raises(ValueError, match="'runs/first' \\(an ancestor of teacher 't'\\) was trained with validation"):
        distillation.check_teacher("t", teacher, _training_data())
    # Started from a model before runs recorded their lineage: what it inherited cannot be checked.
    legacy = _teacher()
    legacy.config["hyperparameters"] = {"init_from": "runs/first"}
    with pytest.raises(ValueError, match="before runs recorded what they inherit"):
        distillation.check_teacher("t", legacy, _training_data())


def test_distillation_needs_a_teacher():
    with pytest.raises(ValueError, match="at least one teacher"):
        distillation.teacher_probabilities([], _training_data())
    with pytest.raises(ValueError, match="at least one teacher"):
        distillation.load_teachers([], _training_data())


@pytest.mark.parametrize("overrides, message", [
    (dict(teachers="builtin"), "non-empty tuple"),
    (dict(teachers=()), "non-empty tuple"),
    (dict(teachers=("builtin",), class_weights="balanced"), "cannot be combined with teachers"),
    (dict(teachers=("builtin",), teacher_weight=1.5), r"teacher_weight must be in \[0, 1\]"),
])
def test_bad_teacher_settings_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        training.validate_config(training.default_config("small_cnn", **overrides))


def test_a_run_started_before_distillation_existed_still_resumes(tmp_path):
    from fer_utils import checkpoints

    current = training.default_config("small_cnn").to_dict()
    stored = {key: value for key, value in current.items() if key not in ("teachers", "teacher_weight")}
    checkpoints._check_same_run(tmp_path, {"config": stored}, current, "fingerprint")
    with pytest.raises(ValueError, match="different settings"):
        checkpoints._check_same_run(tmp_path, {"config": stored}, {**current, "teacher_weight": 0.7}, "fingerprint")
