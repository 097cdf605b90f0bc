"""Knowledge distillation: train on what earlier models predict, not only on the labels.

`train --teachers RUN,builtin,...` makes each training image's target a blend of its label and the
teachers' mean flip-averaged probabilities on it (`--teacher-weight` of the teachers'). An ensemble
of models predicts better than any one of them; distilling it passes some of that into one model of
the same size, and the soft targets say which faces are ambiguous (FER2013's labels are noisy).

The teachers predict only on the training images, and each must have been validated on the same
split as the run it teaches: a teacher that trained on this run's validation images would leak
them into its targets, and the validation accuracy that selects the model would flatter it.
"""

from __future__ import annotations

import numpy as np

# What must match between a teacher's data and the student's for the split to be the same one.
SPLIT_FIELDS = ("validation", "train_size", "val_size", "train_class_counts")


def teacher_probabilities(teachers, training_data, batch_size: int = 256, progress: bool = True) -> np.ndarray:
    """The teachers' mean flip-averaged probabilities on `training_data.train`'s images.

    Args:
        teachers: Run folders, `.keras` files or "builtin" (anything `fer_utils.loading.load_model` takes).
        training_data: The student's `fer_utils.training.TrainingData`.
        batch_size: Prediction batch size.
        progress: Print one line per teacher.

    Raises:
        ValueError: no teachers; a teacher predicts other classes, or was trained on another split
            (or its split is not recorded), so its targets could hold the validation images.
    """
    from fer_utils import evaluation, loading

    teachers = list(teachers or [])
    if not teachers:
        raise ValueError("Distillation needs at least one teacher: a run folder, a .keras file or builtin.")
    train = training_data.train
    total = np.zeros((len(train), len(train.class_names)), dtype="float64")
    for source in teachers:
        teacher = loading.load_model(source)
        check_teacher(source, teacher, training_data)
        probabilities = evaluation.predict_proba(teacher.model, train.images, batch_size=batch_size, tta=True)
        total += probabilities
        if progress:
            agreement = float(np.mean(probabilities.argmax(axis=1) == train.labels))
            print(f"Teacher {source}: agrees with {agreement:.1%} of the {len(train)} training labels", flush=True)
    return (total / len(teachers)).astype("float32")


def check_teachers(teachers, training_data) -> None:
    """Load each teacher and raise ValueError (see `check_teacher`) before any training work starts."""
    from fer_utils import loading

    for source in teachers:
        check_teacher(source, loading.load_model(source), training_data)


def check_teacher(source, teacher, training_data) -> None:
    """Raise ValueError unless `teacher` (a `runs.Run`) predicts the student's classes from its split."""
    from fer_utils import runs

    if tuple(teacher.class_names) != tuple(training_data.train.class_names):
        raise ValueError(
            f"Teacher '{source}' predicts {list(teacher.class_names)}, the training data has "
            f"{list(training_data.train.class_names)}: a teacher must predict the same classes in the same order."
        )
    trained_on = runs.data_provenance(teacher.config)
    for field in SPLIT_FIELDS:
        if trained_on.get(field) is None:
            raise ValueError(
                f"Teacher '{source}' does not record its {field}, so it cannot be shown to have left this run's "
                "validation images out of its training. Use a run trained by fer_utils on the same data and split."
            )
        if trained_on[field] != training_data.provenance.get(field) and field != "validation":
            raise ValueError(
                f"Teacher '{source}' was trained with {field} {trained_on[field]!r}, this run has "
                f"{training_data.provenance.get(field)!r}: it is not the dataset this run trains on. Teach with runs "
                "trained on the same --data."
            )
        if trained_on[field] != training_data.provenance.get(field):
            raise ValueError(
                f"Teacher '{source}' was trained with {field} {trained_on[field]!r}, this run has "
                f"{training_data.provenance.get(field)!r}: it may have trained on this run's validation images. "
                "Teach with runs validated the same way (the same val/ folder, or the same --val-fraction and --seed)."
            )


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
