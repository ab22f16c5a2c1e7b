# Thin wrappers: everything real lives in the package and in .ci/run.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-unit test-slow lint bench

# The CPU build of torch lies on this machine's disk; GPU users install their own torch first.
$(BIN)/gmmn: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/gmmn

setup: $(BIN)/gmmn

# The main job: GMMN+AE on scikit-learn's 8x8 digits (no download), then its evaluation.
# A second run refuses to overwrite runs/digits-gmmn-ae: delete it, or resume with
# `gmmn train --out runs/digits-gmmn-ae --resume`.
demo: setup
	$(BIN)/gmmn train --preset digits-gmmn-ae --out runs/digits-gmmn-ae
	$(BIN)/gmmn evaluate --run runs/digits-gmmn-ae

# Three tiers (README, Development). `make test`, the default `pytest` run: unit + integration
# (pyproject's addopts: -m 'not slow').
test: setup
	$(BIN)/python -m pytest

# The unit tier alone: no training run, no subprocess (under a minute).
test-unit: setup
	$(BIN)/python -m pytest -m 'not slow and not integration'

# The slow tier: subprocesses and fresh interpreters, real signals and SIGKILL loops, two runs
# on one folder, torchrun, real full disks, the full digits presets, a whole quick reproduce
# (docs/reliability.md). CI runs it after `make test`, so CI runs every tier.
test-slow: setup
	$(BIN)/python -m pytest -m slow

lint: setup
	$(BIN)/ruff check src tests benchmarks

bench: setup
	$(BIN)/python benchmarks/mmd_speed.py
