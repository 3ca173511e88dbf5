# Every target does its own set-up: on a fresh clone `make test` or `make demo`
# needs nothing run before it (system packages: see README, or `make system-deps`).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
KAFKA  := deploy/kafka/kafka.sh

.PHONY: install system-deps broker broker-stop test test-unit test-stress lint bench demo clean

# The native ZIP-215 verifier (exchange_zip215, used by exchange/zip215.py) is built
# where there is a Rust toolchain: cargo on PATH, or rustup's ~/.cargo/bin. Its cargo
# target dir stays in native/zip215/target, so a rebuild is incremental. Without cargo,
# exchange.zip215 runs on py-ed25519-zebra-bindings (single checks only) and says so.
NATIVE     := native/zip215
NATIVE_SRC := $(NATIVE)/Cargo.toml $(NATIVE)/Cargo.lock $(NATIVE)/pyproject.toml \
              $(NATIVE)/exchange_zip215.pyi $(wildcard $(NATIVE)/src/*.rs)
CARGO      ?= $(shell command -v cargo || ls $$HOME/.cargo/bin/cargo 2>/dev/null)

# The sample third-party connector plugin (tests/plugins): installed like any plugin, so
# the tests prove the node finds it through its entry point.
SAMPLE_PLUGIN := tests/plugins/sample_connector

$(STAMP): pyproject.toml $(NATIVE_SRC) $(SAMPLE_PLUGIN)/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps ./$(SAMPLE_PLUGIN)
ifneq ($(CARGO),)
	@echo "building the native ZIP-215 verifier ($(NATIVE), release) with $(CARGO)"
	PATH="$(dir $(CARGO)):$$PATH" VIRTUAL_ENV="$(CURDIR)/$(VENV)" \
	    $(VENV)/bin/maturin develop --release --manifest-path $(NATIVE)/Cargo.toml
else
	@echo "no cargo (Rust toolchain) found: signatures are verified by the fallback," \
	    "py-ed25519-zebra-bindings (ZIP-215, single checks only, slower); install Rust" \
	    "with rustup and run 'make install' again for the native batch verifier"
endif
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
	rm -rf $(VENV) $(NATIVE)/target $(NATIVE)/gen-vectors/target build *.egg-info .pytest_cache .mypy_cache .ruff_cache bench-results.json
