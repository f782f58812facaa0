# Developer tasks. The README and CI call these targets verbatim.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-pg15 lint typecheck check demo clean

$(STAMP): pyproject.toml examples/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -e ./examples
	touch $(STAMP)

## Create .venv and install foreman-rt, its dev tools and the example handlers.
setup: $(STAMP)

## The test suite, against FOREMAN_TEST_DSN, else Docker, else an embedded PostgreSQL.
test: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_ARGS)

## Lint and format check.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## mypy --strict on the package.
typecheck: $(STAMP)
	$(BIN)/mypy --strict foreman_rt

check: lint typecheck test

## The live demo on the embedded PostgreSQL: a worker, a batch of jobs, live progress.
demo: $(STAMP)
	$(BIN)/python -m foreman_examples.demo

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache

## Benchmarks: foreman-rt against pgqueuer and procrastinate (docs/benchmarks.md).
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

.PHONY: bench bench-quick

## Every workload, 3 repetitions; results in benchmarks/results/bench-full.{json,png}.
bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/compare.py $(BENCH_ARGS)

## 1 repetition, shorter workloads (a few minutes); results in benchmarks/results/bench-quick.*.
bench-quick: $(BENCH_STAMP)
	$(BIN)/python benchmarks/compare.py --quick $(BENCH_ARGS)

# -- Reliability scenarios (tests/reliability): real worker processes, real PostgreSQL, real
# signals. Figures are kept in tests/reliability/results/last.jsonl.
.PHONY: chaos chaos-quick

## Reliability scenarios, long form (FOREMAN_CHAOS_LONG=1): more jobs, longer storms.
chaos: $(STAMP)
	FOREMAN_CHAOS_LONG=1 $(BIN)/pytest -q -m reliability tests/reliability $(PYTEST_ARGS)
	@cat tests/reliability/results/last.jsonl 2>/dev/null || true

## Reliability scenarios, short form (what CI runs: a few minutes).
chaos-quick: $(STAMP)
	$(BIN)/pytest -q -m reliability tests/reliability $(PYTEST_ARGS)
	@cat tests/reliability/results/last.jsonl 2>/dev/null || true
