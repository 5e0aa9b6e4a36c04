# Two commands on a fresh machine: `make run` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST := $(PY) -m pytest

.PHONY: install run up down status test test-unit lint format bench bench-quick clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: install ## start the bus with a demo stream; Ctrl-C stops it
	$(VENV)/bin/esb run

up: install
	$(VENV)/bin/esb up

down: install
	$(VENV)/bin/esb down

status: install
	$(VENV)/bin/esb status

test: install ## start Kafka, Redis and Ray for the session, then the whole suite
	$(PYTEST) -q -ra --durations=15

test-unit: install
	$(PYTEST) -q tests/unit

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy cluster actors pipelines serve event_streaming_bus benchmarks

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

BENCH_STAMP := $(VENV)/.bench-installed-stamp

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install -q -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) ## the full benchmark suite on a private stack; results in benchmarks/results/
	$(PY) -m benchmarks

bench-quick: $(BENCH_STAMP) ## the same scenarios, smaller (under five minutes)
	$(PY) -m benchmarks --quick

clean:
	rm -rf .esb build *.egg-info
