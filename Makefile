# `make demo` and `make test` build their own virtual environment under .venv (ignored by git).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test lint typecheck unit docs bench clean

# uv installs the environment: pip took minutes to unpack and byte-compile the framework stack
# (compiled here at install: with PYTHONDONTWRITEBYTECODE set, every test process would compile
# torch and transformers again on import).
# uv is told where pip is configured to find packages (tools/uv_flags.py).
UV_VERSION := 0.13.9
UV = VIRTUAL_ENV=$(VENV) $(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) $(shell $(PYTHON) tools/uv_flags.py)
# torch is pinned to the CPU build that lies on disk: a bare `torch` would pull a CUDA build.
TORCH ?= torch==2.13.0+cpu

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --no-compile uv==$(UV_VERSION)
	$(UV) -e .
	touch $@

# The frameworks (Lightning, accelerate, transformers) resolve in one step with torch pinned,
# so that their requirements cannot move it; the docs extra (MkDocs) brings no torch.
$(VENV)/.dev: $(VENV)/.base
	$(UV) -e '.[dev,frameworks,docs]' '$(TORCH)'
	touch $@

demo: $(VENV)/.base
	$(PY) -m ladle demo

lint: $(VENV)/.dev
	$(PY) -m ruff check src tests benchmarks tools
	$(PY) -m ruff format --check src tests benchmarks tools
	PYTHONPATH=src $(VENV)/bin/lint-imports --no-cache --no-logo

typecheck: $(VENV)/.dev
	$(PY) -m mypy

unit: $(VENV)/.dev
	$(PY) -m pytest -q

# The documentation site, built strictly (a broken link, anchor or reference fails) into site/.
# tests/test_docs.py builds it again into a temporary directory and runs every ```python block
# of docs/ (a few seconds each).
docs: $(VENV)/.dev
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

test: lint typecheck docs unit

bench: $(VENV)/.dev
	$(UV) Pillow
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis site
