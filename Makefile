# `make demo` and `make test` build their own virtual environment under .venv (ignored by git).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test lint typecheck unit bench clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e .
	touch $@

# torch is pinned to the CPU build that lies on disk: a bare `torch` would pull a CUDA build.
# The frameworks (Lightning, accelerate, transformers) come after it, with torch pinned again
# so that their requirements cannot move it.
$(VENV)/.dev: $(VENV)/.base
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[dev,frameworks]' torch==2.13.0
	touch $@

demo: $(VENV)/.base
	$(PY) -m ladle demo

lint: $(VENV)/.dev
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks
	PYTHONPATH=src $(VENV)/bin/lint-imports --no-cache --no-logo

typecheck: $(VENV)/.dev
	$(PY) -m mypy

unit: $(VENV)/.dev
	$(PY) -m pytest -q

test: lint typecheck unit

bench: $(VENV)/.dev
	$(PIP) install Pillow
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
