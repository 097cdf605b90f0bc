"""The steps notebooks 03 (VGG16) and 04 (ResNet50) share, so each notebook is its narrative plus
one-line calls, and the two cannot drift apart (`tests/test_notebook_sources.py` checks that their
code cells differ only in `BACKBONE`).

    training_data = training.training_splits(context.data, val_fraction=VAL_FRACTION, seed=SEED)
    run = training_notebook.train(context, training_data, config, overwrite=OVERWRITE)
    print(training_notebook.describe_model(run.model))
    ...
    Markdown(training_notebook.conclusion(run, result, smoke=SMOKE))
"""

from __future__ import annotations


def describe_config(config) -> str:
    """The phases and the loss settings of a `TrainConfig`, one line each."""
    from fer_utils import models, training

    lines = [f"phase {phase}: up to {epochs} epochs" for phase, epochs in training.planned_phases(config)]
    weighting = {"none": "none (plain cross-entropy)", "balanced": "balanced (inverse class frequency)"}
    lines.append(
        f"class weights: {weighting.get(config.class_weights, config.class_weights)}, "
        f"label smoothing: {config.label_smoothing}, "
        f"monitor: {config.monitor}, patience: {config.patience}"
    )
    lines.append(f"fine-tuned layers start with: {config.finetune_prefixes or models.get_spec(config.backbone).finetune_prefixes}")
    return "\n".join(lines)


def train(context, training_data, config, overwrite: bool = False):
    """Train (or resume, or load the finished run) into `context.runs_dir / config.backbone`.

    `training_data` is what `training.training_splits(context.data, ...)` returned (or the data
    location itself). One progress bar per phase and its summary line; the per-epoch numbers go to
    the run's `history.csv`. Returns the loaded `runs.Run`.
    """
    from fer_utils import runs, training

    run_dir = training.train(
        training_data, config, context.runs_dir / config.backbone, progress="phase", overwrite=overwrite
    )
    return runs.load_run(run_dir)


def describe_model(model) -> str:
    """The saved model's layers and where its parameters are."""
    backbone_parameters = model.get_layer("backbone").count_params()
    return "\n".join([
        f"layers: {[layer.name for layer in model.layers]}",
        f"parameters: {model.count_params():,} in total, {backbone_parameters:,} in the backbone, "
        f"{model.count_params() - backbone_parameters:,} in the head",
    ])


def phase_table(history):
    """Epochs, best validation accuracy and seconds per phase (from `history.csv`)."""
    table = history.groupby("phase", sort=False).agg(
        epochs=("epoch", "count"), best_val_accuracy=("val_accuracy", "max"), seconds=("seconds", "sum")
    )
    return table.round(3)


def check_learned(validation, result, smoke: bool) -> str:
    """The one-sided binomial test against the model's own chance level; in smoke mode, fail if it did not learn."""
    from fer_utils import evaluation

    check = evaluation.chance_test(validation.labels, result.y_pred, len(validation.class_names))
    if smoke and not check["p_value"] < 0.05:
        raise AssertionError(f"the model did not learn on the demo data (p = {check['p_value']:.2g})")
    return (
        f"validation accuracy {check['accuracy']:.3f} against a chance level of {check['chance_accuracy']:.3f} "
        f"(one-sided binomial p = {check['p_value']:.2g}, {check['n']} images)"
    )


def run_files(run) -> list[str]:
    """The files of the run folder a reader should know about."""
    return sorted(path.name for path in run.path.iterdir() if not path.name.startswith("."))


def conclusion(run, result, smoke: bool) -> str:
    """The closing Markdown paragraph, computed from the run and its validation result."""
    seconds = run.config.get("wall_time_s", {})
    return (
        f"{run.config['backbone']} ({run.config['weights']['description']}, {run.config['img_size']} px input) "
        f"reached **{result.metrics['accuracy']:.1%}** validation accuracy and {result.metrics['macro_f1']:.3f} macro-F1 "
        f"after {len(run.history)} epochs ({', '.join(f'{phase}: {value:.0f} s' for phase, value in seconds.items())}); "
        f"the saved weights come from the {run.config['selected_phase']} phase, trained with class weights "
        f"`{run.config['hyperparameters']['class_weights']}`. "
        + ("**Smoke run with random weights: the numbers only show that the pipeline works.** " if smoke else "")
        + f"The run is saved in `{run.path.name}/` for [05_compare_models](05_compare_models.ipynb)."
    )
