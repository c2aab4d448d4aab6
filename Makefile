# The two README commands. `make demo` installs everything and runs the pipeline on data/sample;
# `make test` installs everything and runs the test suite. Both are idempotent and reuse pip's cache.
PYTHON ?= python3

.PHONY: install demo test lint

install:
	bash scripts/install.sh

demo: install
	embpipe run

test: install
	$(PYTHON) -m pytest -q

lint:
	ruff check embpipe embpipe_tests benchmarks
