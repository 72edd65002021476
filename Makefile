# Two commands work on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CONFIG ?= configs/segmentation/shapes.yaml
ARGS   ?=

.PHONY: train test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[test,dev]"
	touch $@ $(VENV)/.installed

train: $(VENV)/.installed
	$(PY) train.py fit -c $(CONFIG) $(ARGS)

test: $(VENV)/.installed-test
	$(PY) -m pytest -q $(ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .

bench: $(VENV)/.installed-test
	$(PY) benchmarks/losses.py $(ARGS)

clean:
	rm -rf runs .pytest_cache
