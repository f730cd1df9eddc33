# The two commands of a fresh machine: `make smoke` (the smoke study) and `make test`.
# Both create .venv from pyproject.toml on first use; nothing else needs to be installed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PARAMS ?= params/smoke.yaml
STAMP := $(VENV)/.installed

.PHONY: env smoke study test lint bench clean

env: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps img2dataset==1.47.0
	touch $(STAMP)

smoke: env
	$(BIN)/xlr reproduce $(PARAMS)

study: env
	$(BIN)/xlr reproduce params/synthetic.yaml

test: env
	$(BIN)/python -m pytest

lint: env
	$(BIN)/ruff check xlr tests benchmarks
	$(BIN)/ruff format --check xlr tests benchmarks

bench: env
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf runs reports/*/ .pytest_cache
