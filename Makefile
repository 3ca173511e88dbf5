# Every target does its own set-up: on a fresh clone `make test` or `make demo`
# needs nothing run before it (system packages: see README, or `make system-deps`).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
KAFKA  := deploy/kafka/kafka.sh

.PHONY: install system-deps broker broker-stop test test-unit test-stress lint bench demo clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages the project needs (as root): Java and Maven fetch and run
# Kafka, PostgreSQL's server backs the PostgreSQL store tests.
system-deps:
	deploy/install-system-deps.sh

broker:
	$(KAFKA) start

broker-stop:
	$(KAFKA) stop

# The test session starts the local broker itself (or uses KAFKA_BOOTSTRAP_SERVERS,
# or testcontainers when a Docker engine answers) and stops what it started.
test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The whole suite STRESS_RUNS times in a fresh clone of HEAD, beside a busy loop on every
# core; prints each test that failed and how often (tests/stress.py).
STRESS_RUNS ?= 5
test-stress: $(STAMP)
	$(PY) -m tests.stress $(STRESS_RUNS)

test-unit: $(STAMP)
	$(PY) -m pytest -q -m 'not integration' $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m tests.bench

demo: $(STAMP)
	$(PY) -m nodes.demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache bench-results.json
