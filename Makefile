# The two commands a newcomer needs: `make serve` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= imagecloud-data
PYTEST_ARGS ?=

.PHONY: serve test lint typecheck unit bench-recognition clean

$(BIN)/imagecloud: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

serve: $(BIN)/imagecloud
	$(BIN)/imagecloud serve --demo --data-dir $(DATA_DIR)

test: lint typecheck unit

lint: $(BIN)/imagecloud
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(BIN)/imagecloud
	$(BIN)/mypy

unit: $(BIN)/imagecloud
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
