"""Knowledge distillation: train on what earlier models predict, not only on the labels.

`train --teachers RUN,builtin,...` makes each training image's target a blend of its label and the
teachers' mean flip-averaged probabilities on it (`--teacher-weight` of the teachers'). An ensemble
of models predicts better than any one of them; distilling it passes some of that into one model of
the same size, and the soft targets say which faces are ambiguous (FER2013's labels are noisy).

The teachers predict only on the training images, and each (and every model it started from or
learnt from) must have been validated on the same split as the run it teaches: a teacher that
trained on this run's validation images would leak them into its targets, and the validation
accuracy that selects the model would flatter it. So teachers are run folders or `builtin`, which
record their split; a bare `.keras` file records none and is refused.
"""

from __future__ import annotations

import numpy as np

from fer_utils import lineage


def load_teachers(sources, training_data) -> list:
    """Load each teacher once and check it (`check_teacher`): `[(source, runs.Run), ...]`, before any training work."""
    from fer_utils import loading

    teachers = list(sources or [])
    if not teachers:
        raise ValueError("Distillation needs at least one teacher: a run folder or builtin.")
    loaded = []
    for source in teachers:
        teacher = loading.load_model(source)
        check_teacher(source, teacher, training_data)
        loaded.append((source, teacher))
    return loaded


def teacher_probabilities(teachers, training_data, batch_size: int = 256, progress: bool = True) -> np.ndarray:
    """The teachers' mean flip-averaged probabilities on `training_data.train`'s images.

    Args:
        teachers: `[(source, runs.Run), ...]` as `load_teachers` returns them (checked).
        training_data: The student's `fer_utils.training.TrainingData`.
        batch_size: Prediction batch size.
        progress: Print one line per teacher.

    Raises:
        ValueError: no teachers.
    """
    from fer_utils import evaluation

    if not teachers:
        raise ValueError("Distillation needs at least one teacher: a run folder or builtin.")
    train = training_data.train
    total = np.zeros((len(train), len(train.class_names)), dtype="float64")
    for source, teacher in teachers:
        probabilities = evaluation.predict_proba(teacher.model, train.images, batch_size=batch_size, tta=True)
        total += probabilities
        if progress:
            agreement = float(np.mean(probabilities.argmax(axis=1) == train.labels))
            print(f"Teacher {source}: agrees with {agreement:.1%} of the {len(train)} training labels", flush=True)
    return (total / len(teachers)).astype("float32")


def check_teacher(source, teacher, training_data) -> None:
    """Raise ValueError unless `teacher` (a `runs.Run`) predicts the student's classes and it, and every
    model it started from or learnt from, trained on the student's split (`fer_utils.lineage`)."""
    if tuple(teacher.class_names) != tuple(training_data.train.class_names):
        raise ValueError(
            f"Teacher '{source}' predicts {list(teacher.class_names)}, the training data has "
            f"{list(training_data.train.class_names)}: a teacher must predict the same classes in the same order."
        )
    lineage.check_teacher_lineage(str(source), lineage.lineage_of(source, teacher), training_data.provenance)


def blended_targets(labels, teacher_probs, teacher_weight: float, num_classes: int) -> np.ndarray:
    """`teacher_weight` x the teachers' probabilities + the rest x the one-hot labels (float32 rows summing to 1)."""
    if not 0.0 <= teacher_weight <= 1.0:
        raise ValueError(f"teacher_weight must be in [0, 1], got {teacher_weight}.")
    labels = np.asarray(labels)
    teacher_probs = np.asarray(teacher_probs, dtype="float32")
    if teacher_probs.shape != (len(labels), num_classes):
        raise ValueError(f"Expected teacher probabilities of shape {(len(labels), num_classes)}, "
                         f"got {teacher_probs.shape}.")
    one_hot = np.eye(num_classes, dtype="float32")[labels]
    return (teacher_weight * teacher_probs + (1.0 - teacher_weight) * one_hot).astype("float32")
