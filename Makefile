# geodistill — two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel keeps CI fast; GPU users install a CUDA build of torch first (see README).
TORCH ?= torch==2.13.0

.PHONY: install demo test lint bench gpu-check clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[all]"
	touch $@

install: $(VENV)/.installed

# `geodistill demo` first checks for the Debian packages its corpus needs (geodistill/corpus/requirements.py):
# installed when run as root with apt-get, else it stops at once with the apt-get command.
demo: install
	$(VENV)/bin/geodistill demo --out runs/demo

# The same check for the tests: installed when it can be; otherwise named here and in pytest's summary.
# Two pytest-xdist workers, one thread each (the 2-core CI machine); --dist loadfile keeps each test file in
# one worker, in its order, so module fixtures are built once and a file's tests see what they always saw.
test: install
	$(PY) -m geodistill.corpus.requirements test --report
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile

# For whoever has a CUDA GPU: every GPU test, then the step benchmark at full size (large-v2-shaped teacher,
# random weights) written to docs/benchmarks.md and runs/bench-gpu-step/result.json, then docs/scale.md's
# per-100-h plan filled from it (printed too: the rows that were "unmeasured").
gpu-check: install
	$(PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'gpu-check: torch sees no CUDA GPU (install a CUDA build of torch, see README)')"
	$(PY) -m pytest -q -m gpu
	$(PY) benchmarks/gpu_step.py --size full --device cuda --write docs/benchmarks.md
	$(PY) scripts/scale_plan.py --result runs/bench-gpu-step/result.json --write docs/scale.md

# ruff (style, and PLC0415: no function-local imports without a reason), the import layers
# (import-linter, pyproject.toml), the layer table in docs/architecture.md, and the type checker.
lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	$(VENV)/bin/lint-imports
	$(PY) scripts/layers.py --check
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache
