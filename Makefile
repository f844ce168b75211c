# Commune IOC. `make run` and `make test` work on a fresh Debian/Ubuntu machine:
# they install what is missing (system packages, then the Python environment).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check bench deps deps-browser venv clean

run: deps venv
	$(BIN)/ioc up --demo

test: deps-browser venv
	$(BIN)/pytest -q -p no:cacheprovider

check: venv
	$(BIN)/ruff check ingest services gateway simulator cli tests bench
	$(BIN)/ruff format --check ingest services gateway simulator cli tests bench
	$(BIN)/mypy

bench: deps venv
	$(BIN)/python bench/ingest.py

deps:
	@bash deploy/install-deps.sh

deps-browser:
	@bash deploy/install-deps.sh --browser

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -U pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache test-output
