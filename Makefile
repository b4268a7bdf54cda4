# make lab: create .venv when missing (or when the dependency list changed), then open JupyterLab.
# make test: the same set-up, then the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# This machine serves these from local disk; elsewhere pick a CPU build, e.g.
#   make TORCH="torch torchvision --index-url https://download.pytorch.org/whl/cpu" test
TORCH ?= torch==2.14.1 torchvision==0.29.1
# The suite on every core, a test file per worker (its module fixtures' conversions made once); PYTEST_ARGS=
# (empty) runs it in one process.
PYTEST_ARGS ?= -n auto --dist loadfile

.PHONY: lab test bench clean

$(STAMP): pyproject.toml Makefile constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt $(TORCH)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[lab,test,android,timm,ray,detect,coreai]'
	@touch $(STAMP)

# ExecuTorch (converter and runtime) and LiteRT's converter live in an env of their own inside .venv: in .venv,
# coremltools imports executorch, torchao and scikit-learn whenever they are installed (import coremltools
# 0.6 s -> 12 s), and litert-torch pins typing_extensions below what Jupyter needs. The .pth file lets it
# use .venv's torch behind its own packages; the workbench runs it as a subprocess, offline.
TOOLS := $(VENV)/android
TOOLS_STAMP := $(TOOLS)/.installed
ANDROID_TOOLS ?= executorch==1.5.* litert-torch==0.10.*
# Apple's coreai-opt (Core AI's compressed variants) needs torchao, which coremltools would import in .venv
COREAI_TOOLS ?= coreai-opt==0.3.0
$(TOOLS_STAMP): Makefile | $(STAMP)
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > \
		"$$($(TOOLS)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/workbench-main-venv.pth"
	$(TOOLS)/bin/python -m pip install --quiet $(ANDROID_TOOLS) $(COREAI_TOOLS)
	@touch $(TOOLS_STAMP)

lab: $(STAMP) $(TOOLS_STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks --ServerApp.ip=127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root)

test: $(STAMP) $(TOOLS_STAMP)
	$(BIN)/ruff check workbench tests bench
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# make bench: offline benchmarks (about 26 minutes); prints a table, writes bench/results.json.
# BENCH_ARGS=--quick for a fast run while developing, --sections ae for some sections.
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
