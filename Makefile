# make lab: create .venv when missing (or when the dependency list changed), then open JupyterLab.
# make test: the same set-up, then the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# This machine serves these from local disk; elsewhere pick a CPU build, e.g.
#   make TORCH="torch torchvision --index-url https://download.pytorch.org/whl/cpu" test
TORCH ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?=

.PHONY: lab test bench clean

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[lab,test]'
	@touch $(STAMP)

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks --ServerApp.ip=127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root)

test: $(STAMP)
	$(BIN)/ruff check workbench tests bench
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# make bench: offline benchmarks (under 10 minutes); prints a table, writes bench/results.json.
# BENCH_ARGS=--quick for a fast run while developing, --sections ae for some sections.
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
