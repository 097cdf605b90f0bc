# One-command entry points. `make demo` and `make test` both set everything up from a clean clone
# (only Python >= 3.11 is needed) and then run the demo pipeline or the whole test suite.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test unit nbval notebooks clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

test: setup
	$(PY) -m pytest tests

unit: setup
	$(PY) -m pytest tests -m "not notebooks"

clean:
	rm -rf $(VENV) outputs runs notebooks/runs .pytest_cache
