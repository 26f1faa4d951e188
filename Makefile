# Promesa: one entry point for setup, running, tests, lint, code generation and benchmarks.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUF := $(VENV)/bin/buf
STAMP := $(VENV)/.installed
# Python code that ruff checks: the services and their tools, and the front office (clients/).
PY_DIRS := services devtools tests bench chaos clients/python/src/promesa_client clients/python/examples clients/cli/src

export PYTHONPATH := $(CURDIR)/services:$(CURDIR)/gen:$(CURDIR)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup run test lint proto bench chaos images clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt clients/python/pyproject.toml clients/cli/pyproject.toml
	@# Debian's Chromium for the browser test of the feedback page (issue 15); Playwright never
	@# downloads a browser of its own.
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi
	$(PYTHON) -m venv $(VENV)
	@# promtool for the alert rules' tests (issue 16): only the binary, from Debian's prometheus
	@# package, into the venv; no Prometheus server is installed or started.
	@if ! command -v promtool >/dev/null && command -v apt-get >/dev/null; then \
	  scratch=$$(mktemp -d) && (cd $$scratch && apt-get download -qq prometheus >/dev/null \
	    && dpkg-deb --fsys-tarfile prometheus_*.deb | tar -xO ./usr/bin/promtool > promtool) \
	    && install -m 0755 $$scratch/promtool $(VENV)/bin/promtool; rm -rf $$scratch; \
	fi
	$(PY) -m pip install --quiet --upgrade pip
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: setup
	$(PY) -m devtools.run

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check $(PY_DIRS)
	$(VENV)/bin/ruff format --check $(PY_DIRS)
	$(VENV)/bin/mypy
	$(BUF) lint

proto: setup
	$(PY) -m devtools.protogen

# Median of 3 runs; pass options through, e.g. make bench BENCH_ARGS="--only rpcs --runs 5".
BENCH_ARGS ?=
bench: setup
	$(PY) -m bench $(BENCH_ARGS)

# Fault injection on the real system, SQLite and MongoDB (issue 12): chaos-report.json.
chaos: setup
	$(PY) -m chaos

images:
	@if docker info >/dev/null 2>&1; then \
	  for s in contacts interactions followup; do \
	    docker build -f deploy/images/$$s.Dockerfile -t promesa/$$s:$${TAG:-0.1.0} . || exit 1; \
	  done; \
	else echo "make images: no Docker engine on this machine; see deploy/README.md"; exit 1; fi

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
