# One-command entry points. `make demo` and `make test` each set everything up from a clean clone
# (only Python >= 3.11 and make are needed) and then run the demo pipeline or the whole test suite.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo experiment experiment-data test test-jax test-stacks unit nbval notebooks benchmarks clean \
	gpu-check gpu-check-dry-run gpu-check-wheels gpu-check-subset

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,notebooks,export,jax]"
	touch $(STAMP)

# Command 1: run the notebook series headless on the built-in demo data (smoke settings).
# Executed notebooks, run folders and the comparison summary land in outputs/demo/.
demo: setup
	FER_SMOKE=1 $(PY) tools/run_notebooks.py --out outputs/demo --force

# The experiment: the whole series headless on your FER2013 with full settings (a GPU box, or
# overnight on a CPU). Executed notebooks, run folders and the comparison land in $(OUT), one console
# line per notebook. Rerunning resumes: finished notebooks are kept (FORCE=1 reruns them) and an
# interrupted training run continues from its last finished epoch.
OUT ?= outputs/experiment
experiment-data:  # checked before setup, so a missing DATA costs nothing
	@test -n "$(DATA)" || { echo "usage: make experiment DATA=path/to/fer2013 [OUT=outputs/experiment] [FORCE=1]" >&2; exit 2; }
experiment: experiment-data setup
	$(PY) tools/run_notebooks.py --out "$(OUT)" --data "$(DATA)" $(if $(FORCE),--force)

# Command 2: the whole test suite: unit tests, then nbval over the notebooks in order.
# The notebooks write their run folders into a fresh temporary folder, so no earlier run is reused.
NBVAL := --nbval-lax --nbval-current-env --nbval-cell-timeout=900

test: setup
	runs=$$(mktemp -d) && FER_SMOKE=1 FER_RUNS_DIR=$$runs $(PY) -m pytest tests notebooks $(NBVAL); \
	status=$$?; rm -rf "$$runs"; exit $$status

unit: setup
	$(PY) -m pytest tests

# The unit tests again under Keras's JAX backend (JAX's CPU wheel comes with setup). CI's time allows
# the files that exercise the backend-specific code: backend choice, devices, gradients and models
# (the shipped one included) across backends (test_backends), Grad-CAM, training (fit, resume,
# determinism), evaluation (TTA, compare's ensemble), and faces (the MTCNN detector's
# networks on JAX). The whole suite passes under JAX too: `make test-jax JAX_TESTS=tests`.
JAX_TESTS ?= tests/test_backends.py tests/test_gradcam.py tests/test_training.py tests/test_evaluation.py \
	tests/test_faces.py
test-jax: setup
	KERAS_BACKEND=jax FER_SMOKE=1 $(PY) -m pytest $(JAX_TESTS)

nbval: setup
	runs=$$(mktemp -d) && FER_SMOKE=1 FER_RUNS_DIR=$$runs $(PY) -m pytest notebooks $(NBVAL); \
	status=$$?; rm -rf "$$runs"; exit $$status

# Re-execute the committed notebooks in place on demo data (smoke settings), in order.
notebooks: setup
	FER_SMOKE=1 $(PY) tools/run_notebooks.py --inplace

clean:
	rm -rf $(VENV) .stacks outputs runs notebooks/runs .pytest_cache

# The platform stacks: unit tests and nbval under Colab's and Kaggle's own library versions
# (constraints/*.txt), with fer_utils installed --no-deps as the notebooks' setup cell does there.
test-stacks:
	$(PYTHON) tools/test_stack.py colab kaggle

# The GPU check (benchmarks/README.md, "The GPU check"): VGG16 and ResNet50 at 96 px under JAX, float32 against
# mixed precision, on one GPU. `gpu-check` runs with the GPU machine's own python3 (no venv there),
# after the wheels of `gpu-check-wheels` are installed (benchmarks/README.md has the one install line).
# `gpu-check-subset` writes the FER2013 subset it trains on (DATA: your FER2013 root).
# `gpu-check-dry-run` is the same check at tiny sizes on the demo data, on a CPU (CI runs it).
GPU_CHECK_WHEELS := keras==3.15.1 namex==0.1.0 optree==0.20.0
GPU_CHECK_PLATFORMS := $(foreach tag,manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1,--platform $(tag)_x86_64)

gpu-check:
	KERAS_BACKEND=$${KERAS_BACKEND:-jax} $(PYTHON) benchmarks/gpu_check.py

gpu-check-dry-run: setup
	KERAS_BACKEND=$${KERAS_BACKEND:-jax} $(PY) benchmarks/gpu_check.py --dry-run

gpu-check-subset: setup
	@test -n "$(DATA)" || { echo "usage: make gpu-check-subset DATA=path/to/fer2013" >&2; exit 2; }
	$(PY) benchmarks/gpu_check.py --make-subset "$(DATA)"

# Keras and the two of its requirements the GPU machine lacks, as Python 3.12 manylinux wheels in
# .whl/ (ignored by git), for a machine that cannot reach PyPI.
gpu-check-wheels:
	$(PYTHON) -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		$(GPU_CHECK_PLATFORMS) -d .whl $(GPU_CHECK_WHEELS)
