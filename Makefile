# The two commands a newcomer needs: `make serve` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= imagecloud-data
PYTEST_ARGS ?=

.PHONY: serve test lint typecheck unit bench-recognition clean
.PHONY: bench-reliability bench-crash bench-load bench-fuzz bench-import bench-slow bench-restart bench-flood

# What serving needs, and nothing more: `make serve` never installs the test and lint tools.
$(BIN)/imagecloud: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# The test, lint and browser-driving tools on top.
$(VENV)/.dev-deps: pyproject.toml $(BIN)/imagecloud
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

serve: $(BIN)/imagecloud
	$(BIN)/imagecloud serve --demo --data-dir $(DATA_DIR)

test: lint typecheck unit

lint: $(VENV)/.dev-deps
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(VENV)/.dev-deps
	$(BIN)/mypy

unit: $(VENV)/.dev-deps
	$(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

# Long reliability runs; reports (with the machine they ran on) go to bench/results/reliability/.
RESULTS := bench/results/reliability
FUZZ_SECONDS ?= 600
CRASH_KILLS ?= 25

$(VENV)/.bench-deps: pyproject.toml $(VENV)/.dev-deps
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	touch $@

bench-reliability: bench-crash bench-fuzz bench-load bench-restart bench-slow bench-flood

# SIGKILL storm under AddImage / RemoveImage / FindImage traffic.
bench-crash: $(VENV)/.dev-deps
	mkdir -p $(RESULTS)
	IMAGECLOUD_CRASH_KILLS=$(CRASH_KILLS) IMAGECLOUD_CRASH_REPORT=$(RESULTS)/crash-sigkill.json \
		$(BIN)/python -m pytest -q -s tests/reliability/test_crash.py

# 32 connections flooding /files/ (previews and originals, no credentials) while the owner runs FindImage.
FLOOD_FINDS ?= 200
bench-flood: $(BIN)/imagecloud
	mkdir -p $(RESULTS)
	IMAGECLOUD_FLOOD_FINDS=$(FLOOD_FINDS) IMAGECLOUD_FLOOD_REPORT=$(RESULTS)/anonymous-flood.json \
		$(BIN)/python -m pytest -q -p no:xdist tests/reliability/test_anonymous_flood.py

# 32 locust users for 5 minutes against a 10k-target channel (seeded once into build/load-10k: file, row and
# features as AddImage stores them, without the rating, which would take ~25 minutes on 2 cores).
bench-load: $(VENV)/.dev-deps
	$(BIN)/python -m tests.reliability.load --seed --targets 10000 --users 32 --duration 300 \
		--data-dir build/load-10k --report $(RESULTS)/load-10k.json

# Start to ready after SIGKILL at 1k and 10k targets (seeded once, as for bench-load), 3 kills each.
bench-restart: $(VENV)/.dev-deps
	$(BIN)/python -m tests.reliability.restart --targets 1000 --data-dir build/restart-1k \
		--report $(RESULTS)/restart-1k.json
	$(BIN)/python -m tests.reliability.restart --targets 10000 --data-dir build/load-10k \
		--report $(RESULTS)/restart-10k.json

# A thousand connections sending request heads a byte at a time while an owner searches.
bench-slow: $(VENV)/.dev-deps
	IMAGECLOUD_SLOW_CONNECTIONS=1000 $(BIN)/python -m pytest -p no:xdist -q tests/reliability/test_slow_clients.py

# atheris over the decode path and the form parsing path, both at once, then the report and kept corpus.
bench-fuzz: $(VENV)/.bench-deps
	mkdir -p build/fuzz
	for harness in decode multipart; do \
		$(BIN)/python tests/fuzz/fuzz_$$harness.py build/fuzz/$$harness -artifact_prefix=build/fuzz/$$harness- \
			-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
			> build/fuzz/$$harness.log 2>&1 & \
	done; wait
	$(BIN)/python -m tests.fuzz.report build/fuzz $(RESULTS)/fuzz.json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# `imagecloud import` throughput: a fresh data directory, the dataset's distractor photos enrolled in-process
# (rating included). Summary on the terminal, every file's outcome in build/import/report.json.
DATASET ?= ../shared/eval/smvs-dvd
bench-import: $(BIN)/imagecloud
	rm -rf build/import && mkdir -p build/import
	$(BIN)/imagecloud user create bench --data-dir build/import/data > /dev/null
	$(BIN)/imagecloud channel create bench --owner bench --data-dir build/import/data
	$(BIN)/imagecloud import $(DATASET)/distractors --channel bench --data-dir build/import/data \
		--report build/import/report.json
