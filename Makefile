# make demo: the whole path on embedded defaults (emulator + SQLite + Airflow); make test: the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-lowest lint format demo dev clean contract fuzz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/airflow-ion demo $(DEMO_ARGS)

# The provider on a distributed Airflow (CeleryExecutor, 2 API servers behind HAProxy, 2 schedulers,
# 2 triggerers, 2 Celery workers); starts PostgreSQL/Redis when down, installs haproxy when missing.
.PHONY: demo-cluster
demo-cluster: $(STAMP)
	$(BIN)/airflow-ion demo-cluster $(DEMO_ARGS)

# make dev DEV_ARGS="--dags-folder ../my-dags": your DAGs on a local Airflow wired to the emulator.
dev: $(STAMP)
	$(BIN)/airflow-ion dev $(DEV_ARGS)

test: $(STAMP) ui-browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The lowest Airflow release pyproject.toml allows, in a second venv: the suite minus the real-Airflow
# end-to-end tests (-m "not e2e"), which CI runs on the newest release only (they take minutes each).
LOWEST_AIRFLOW ?= 3.1.8
LOWEST_VENV := .venv-lowest
LOWEST_STAMP := $(LOWEST_VENV)/.installed-$(LOWEST_AIRFLOW)

$(LOWEST_STAMP): pyproject.toml
	rm -rf $(LOWEST_VENV)
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOWEST_VENV)/bin/python -m pip install --quiet -e ".[test]" "apache-airflow==$(LOWEST_AIRFLOW)"
	touch $(LOWEST_STAMP)

test-lowest: $(LOWEST_STAMP)
	$(LOWEST_VENV)/bin/python -m pytest -m "not e2e" $(PYTEST_ARGS)

# Contract tests: the emulator by default; ION_CONTRACT_CONN=<Airflow connection URI or JSON> for a real
# tenant (read-only), plus ION_CONTRACT_WRITE=1 to create/update/disable/clean up one test receiver.
contract: $(STAMP)
	$(BIN)/python -m pytest tests/contract -q $(PYTEST_ARGS)

# The receiver's property-based HTTP test at length (make test runs 150 examples); FUZZ_EXAMPLES=n to change.
fuzz: $(STAMP)
	ION_FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),3000) $(BIN)/python -m pytest -q -s --timeout=0 tests/webhooks/test_receiver_fuzz.py $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(LOWEST_VENV) .pytest_cache .ruff_cache .hypothesis .demo .demo-cluster

# Benchmarks: each writes its section of benchmarks/RESULTS.md; BENCH_ARGS="--quick" for tiny counts.
.PHONY: bench bench-receiver bench-airflow bench-fanout bench-parse bench-hook
bench: bench-receiver bench-airflow bench-fanout bench-parse bench-hook

bench-receiver: $(STAMP)
	$(BIN)/python -m benchmarks.bench_receiver $(BENCH_ARGS)

bench-airflow: $(STAMP)
	$(BIN)/python -m benchmarks.bench_airflow $(BENCH_ARGS)

bench-fanout: $(STAMP)
	$(BIN)/python -m benchmarks.bench_fanout $(BENCH_ARGS)

bench-parse: $(STAMP)
	$(BIN)/python -m benchmarks.bench_parse $(BENCH_ARGS)

bench-hook: $(STAMP)
	$(BIN)/python -m benchmarks.bench_hook $(BENCH_ARGS)

# Not part of `make bench`: it starts the whole local Celery cluster (see README "Deploying on a cluster").
.PHONY: bench-cluster
bench-cluster: $(STAMP)
	$(BIN)/python -m benchmarks.bench_cluster $(BENCH_ARGS)

# Browser tests of the "ION webhooks" page (tests/ui, headless Debian chromium driven by selenium).
# ui-browser installs chromium + chromium-driver when either is missing (needs root, as CI has); a no-op after.
.PHONY: test-ui ui-browser
ui-browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	else echo "The UI browser tests need chromium and chromium-driver: run as root, or apt-get install them." >&2; exit 1; fi

# The cluster failure tests alone (kill -9 of each component); `make test` runs them too.
.PHONY: test-cluster
test-cluster: $(STAMP)
	$(BIN)/python -m pytest tests/cluster $(PYTEST_ARGS)

test-ui: $(STAMP) ui-browser
	$(BIN)/python -m pytest tests/ui $(PYTEST_ARGS)
