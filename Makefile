# make demo: the whole path on embedded defaults (emulator + SQLite + Airflow); make test: the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint format demo clean fuzz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/airflow-ion demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The receiver's property-based HTTP test at length (make test runs 150 examples); FUZZ_EXAMPLES=n to change.
fuzz: $(STAMP)
	ION_FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),3000) $(BIN)/python -m pytest -q -s --timeout=0 tests/webhooks/test_receiver_fuzz.py $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .demo

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
