# Two commands on a fresh machine: `make demo` and `make test`.
# torch==2.13.0 is installed first, on its own: pip then takes the local CPU wheel, and nothing later pulls a CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.synthgate-installed
export PREFECT_HOME ?= $(CURDIR)/.prefect-home
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90

.PHONY: install demo test test-fast lint bench performance clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,ray,postgres]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/synthgate run --input dataset:penguins --output out/penguins.parquet

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python bench/render_performance.py --check

# Everything, as CI runs it (.ci/run).
test: lint
	$(BIN)/pytest -q -n 2 --dist worksteal

# Everything not marked slow: the loop to run while editing (under 2 minutes on a 2-core machine).
test-fast: lint
	$(BIN)/pytest -q -n 2 --dist worksteal -m "not slow"

bench: $(STAMP)
	$(BIN)/python bench/fit_speed.py

# docs/performance.md from the benches' records in bench/results/*.json.
performance: $(STAMP)
	$(BIN)/python bench/render_performance.py

clean:
	rm -rf out .prefect-home .pytest_cache .ruff_cache
