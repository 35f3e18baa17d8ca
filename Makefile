# lora-nlg: every stage is one target; each creates the venv first (`setup`).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYS ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

# Stage variables (documented in README.md).
DATASET  ?= e2e
RAW_DIR  ?=
SPLITS   ?=
MODEL    ?= gpt2-medium
PRETRAINED ?=
RUN      ?= $(DATASET)
SPLIT    ?= test
NPROC    ?= 1
NNODES   ?= 1
NODE_RANK ?= 0
MASTER_ADDR ?= 127.0.0.1
MASTER_PORT ?= 29500
RESUME   ?= 0
ARGS     ?=
PYTEST_ARGS ?=

.PHONY: help setup test data train decode eval demo bench bench-train bench-decode e2e webnlg dart clean-venv

help: ## list targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv and install requirements (re-runs when they change)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(TEST_STAMP): $(STAMP) requirements-test.txt
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

test: $(TEST_STAMP) ## run the whole test suite
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean-venv: ## remove .venv
	rm -rf $(VENV)

# ---- data (issue 3) ---------------------------------------------------------------------------

# ---- train (issue 4) --------------------------------------------------------------------------

# ---- decode (issue 5) -------------------------------------------------------------------------

# ---- eval (issue 6) ---------------------------------------------------------------------------

# ---- demo, paper recipes, bench (issue 7) ------------------------------------------------------
