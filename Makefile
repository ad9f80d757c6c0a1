# Two entry points for a fresh machine with Python 3.10+ and make:
#   make demo   set up .venv and run the pipeline on the embedded synthetic dataset
#   make test   set up .venv and run lint, import contracts and the fast test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PIP := $(BIN)/python -m pip

.PHONY: setup demo test test-slow test-all lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	# torch first: from a local CPU wheel where one is configured, before anything can ask for it.
	$(PIP) install torch==2.13.0
	$(PIP) install -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/autoseg demo --output demo_output

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

test-all: lint
	$(BIN)/python -m pytest -m "slow or not slow"

bench: $(STAMP)
	$(BIN)/python bench/preprocess.py
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/predict.py
	$(BIN)/python bench/slicer_io.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache .ruff_cache
