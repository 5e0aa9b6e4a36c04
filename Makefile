# Two commands on a fresh machine: `make run` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST := $(PY) -m pytest
COVERAGE := $(PY) -m coverage
# Where coverage data lands ([tool.coverage.run] data_file in pyproject.toml): the test process
# and every Python process started from its environment (the Ray head's workers too) write here.
COV_DIR := .coverage-data
UNIT_PATHS := tests/unit pipelines cluster event_streaming_bus
INTEGRATION_PATHS := tests/integration tests/e2e tests/faults

.PHONY: install run up down status test test-unit test-integration coverage lint format \
	bench bench-quick clean

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

# The whole suite under coverage: pytest-cov measures pytest, and coverage.py's patch=subprocess
# (pyproject.toml) every Python process started from its environment, the Ray head's workers
# included. pytest-cov combines what is there when pytest ends into $(COV_DIR)/.coverage;
# `coverage combine --append` adds data files written after that, `coverage report` prints the
# summary and enforces fail_under. The exit code is pytest's when it failed, else the report's.
define run_with_coverage
	@rm -rf $(COV_DIR)
	@echo "$(PYTEST) -q -ra --durations=15 --cov --cov-report= --cov-fail-under=0"
	@rc=0; $(PYTEST) -q -ra --durations=15 --cov --cov-report= --cov-fail-under=0 || rc=$$?; \
	if ls $(COV_DIR)/.coverage.* >/dev/null 2>&1; then \
		echo "$(COVERAGE) combine --append"; \
		$(COVERAGE) combine --append -q || { [ $$rc -ne 0 ] || rc=1; }; \
	fi; \
	echo "$(COVERAGE) report"; \
	$(COVERAGE) report || { r=$$?; [ $$rc -ne 0 ] || rc=$$r; }; \
	exit $$rc
endef

test: install ## start Kafka, Redis and Ray for the session, then the whole suite, with coverage
	$(run_with_coverage)

coverage: install ## the same as `make test`, then an HTML report in htmlcov/
	@rc=0; $(MAKE) --no-print-directory test || rc=$$?; \
	if [ -f $(COV_DIR)/.coverage ]; then \
		$(COVERAGE) html -q --fail-under=0 && \
		echo "HTML coverage report: $(CURDIR)/htmlcov/index.html"; \
	fi; \
	exit $$rc

test-unit: install ## tests/unit and the packages' doctests: no services
	$(PYTEST) -q $(UNIT_PATHS)

test-integration: install ## tests/integration, tests/e2e, tests/faults: real Kafka, Redis, Ray
	$(PYTEST) -q -ra --durations=15 $(INTEGRATION_PATHS)

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

bench-quick: $(BENCH_STAMP) ## the same scenarios, smaller (about ten minutes)
	$(PY) -m benchmarks --quick

clean:
	rm -rf .esb build *.egg-info $(COV_DIR) htmlcov
