# Commune IOC. `make run` and `make test` work on a fresh Debian/Ubuntu machine:
# they install what is missing (system packages, then the Python environment).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-plain-paho check bench fuzz deps deps-browser venv clean dashboard-vendor

# `make run RATE_SCALE=10` plays the demo's day ten times faster.
RATE_SCALE ?= 1

run: deps venv
	$(BIN)/ioc up --demo --rate-scale $(RATE_SCALE)

# Two test processes (pytest-xdist), each with its own database cluster, brokers and browser; a file's
# tests stay together in one of them. Most of a test's time is waiting on real servers, so two
# processes on two cores take about half the time of one. TEST_JOBS=0 runs them in this process.
TEST_JOBS ?= 2
XDIST = $(if $(filter 0,$(TEST_JOBS)),,-n $(TEST_JOBS) --dist loadfile)

test: deps-browser venv
	$(BIN)/pytest -q -p no:cacheprovider $(XDIST)

# The ingest and fault tests again on plain paho (IOC_INGEST_FAST=false), as CI runs them.
test-plain-paho: deps-browser venv
	IOC_INGEST_FAST=false $(BIN)/pytest -q -p no:cacheprovider $(XDIST) tests/ingest tests/faults

check: venv
	$(BIN)/ruff check ingest services gateway simulator cli tests bench
	$(BIN)/ruff format --check ingest services gateway simulator cli tests bench
	$(BIN)/mypy

bench: deps venv
	$(BIN)/python bench/ingest.py

# The long property-based runs (make test runs each bounded and seeded): MQTT ingest, the HTTP
# API (OpenAPI), registry files. Each prints JSON with what it tried and the distinct failures.
FUZZ_EXAMPLES ?= 2000
fuzz: deps venv
	$(BIN)/python bench/fuzz_ingest.py --examples $(FUZZ_EXAMPLES)
	$(BIN)/python bench/fuzz_http.py --examples 200
	IOC_FUZZ_EXAMPLES=3000 $(BIN)/pytest -q -p no:cacheprovider tests/services/test_registry_fuzz.py

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

# Refresh the dashboard's vendored libraries from npm (committed; the page needs no build step).
dashboard-vendor:
	@d=$$(mktemp -d) && cd $$d && npm pack -q leaflet@1.9.4 uplot@1.6.32 swagger-ui-dist@5.35.0 >/dev/null && \
	  mkdir l u s && tar xzf leaflet-1.9.4.tgz -C l && tar xzf uplot-1.6.32.tgz -C u && \
	  tar xzf swagger-ui-dist-5.35.0.tgz -C s && cd - >/dev/null && \
	  cp $$d/l/package/dist/leaflet.js $$d/l/package/dist/leaflet.css $$d/l/package/LICENSE dashboard/vendor/leaflet/ && \
	  cp $$d/l/package/dist/images/*.png dashboard/vendor/leaflet/images/ && \
	  cp $$d/u/package/dist/uPlot.iife.min.js $$d/u/package/dist/uPlot.min.css $$d/u/package/LICENSE dashboard/vendor/uplot/ && \
	  cp $$d/s/package/swagger-ui-bundle.js $$d/s/package/swagger-ui.css $$d/s/package/LICENSE $$d/s/package/NOTICE dashboard/vendor/swagger-ui/ && \
	  rm -rf $$d
