# The whole set-up on a fresh machine is `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEMO_DIR ?= demo-workspace
# `make demo DEMO_ARGS=--fast` for the three-minute version, `DEMO_ARGS=--fresh` to restart.
DEMO_ARGS ?=

export HF_HUB_OFFLINE ?= 1
export MPLBACKEND ?= Agg

.PHONY: demo test lint bench calibrate install clean

# Reinstall when the project's metadata changes; the venv itself is made once.
$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(INSTALLED)

install: $(INSTALLED)

demo: $(INSTALLED)
	$(BIN)/geotag demo $(DEMO_DIR) $(DEMO_ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check geotag tests benchmarks scripts
	$(BIN)/ruff format --check geotag tests benchmarks scripts
	$(BIN)/mypy geotag

test: lint
	$(BIN)/python -m pytest

bench: $(INSTALLED)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python benchmarks/bench_grid.py
	$(BIN)/python benchmarks/bench_sim.py
	$(BIN)/python benchmarks/bench_scrape.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_predict.py
	$(BIN)/python benchmarks/bench_explain.py
	$(BIN)/python benchmarks/bench_startup.py

# Minutes: is the simulated world learnable, but not trivially, and is its shortcut real?
calibrate: $(INSTALLED)
	$(BIN)/python benchmarks/calibrate_sim.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .ruff_cache
