# The two README commands. `make demo` installs everything and runs the pipeline on data/sample;
# `make test` installs everything and runs the test suite. Both install into .venv from requirements.lock
# (scripts/install.sh), are idempotent and reuse pip's cache and the built llama-cpp-python wheel.
VENV ?= .venv
export EMBPIPE_VENV := $(VENV)
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install demo test test-fast lint lock

install:
	bash scripts/install.sh

# The default recipe on data/sample, scored first on the hand-written questions of data/sample-eval, under a
# 30,000-token teacher budget.
demo: install
	embpipe run --beir data/sample-eval --token-budget 30000

test: install
	python -m pytest -q --durations=30

test-fast: install
	python -m pytest -q -m "not slow"

lint:
	ruff check embpipe embpipe_tests benchmarks

# Regenerate requirements.lock after changing dependencies in pyproject.toml or requirements/pins.txt.
lock:
	bash scripts/lock.sh
