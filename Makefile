# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv when needed.
# The first interpreter that runs and is 3.11+ (pyenv shims answer `command -v` for versions they lack).
PY ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
          $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { command -v $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TS := generators/typescript
TS_STAMP := $(TS)/node_modules/.installed

.DEFAULT_GOAL := help
.PHONY: help install tools demo test test-quick ts-test lint bench bench-quick bench-profile

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -n "$(PY)" || { echo "Python 3.11+ is required: set PY=/path/to/python3.11" >&2; exit 2; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev tools

demo: $(STAMP) ## the whole story on an embedded PostgreSQL, in under a minute
	env -u DATABASE_URL $(BIN)/processor demo

# Debian tools some tests call (promtool checks the alert rules; systemd-analyze verifies the unit): installed
# when missing and apt-get can; otherwise those tests fail saying what is missing.
tools:
	@command -v promtool >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >/dev/null; } || true
	@command -v systemd-analyze >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q systemd >/dev/null; } || true

test: $(STAMP) tools ts-test ## run the whole suite (TEST_DATABASE_URL, else Docker, else an embedded PostgreSQL)
	$(BIN)/pytest

$(TS_STAMP): $(TS)/package-lock.json
	cd $(TS) && npm ci --no-audit --no-fund --loglevel=error
	@touch $(TS_STAMP)

ts-test: $(TS_STAMP) ## the TypeScript generator kit: strict type-check, node:test, the same tests under Deno
	cd $(TS) && npm test --silent && npm run --silent test:deno

test-quick: $(STAMP) tools ## the suite without the slow reliability tests
	$(BIN)/pytest -m 'not reliability'

lint: $(STAMP) ## ruff and mypy --strict
	$(BIN)/ruff check processor tests bench
	$(BIN)/mypy

bench: $(STAMP) ## all benchmarks (about 30 min): one table, bench/results/*.json (BENCH_DATABASE_URL or embedded)
	$(BIN)/python -m bench.run

bench-quick: $(STAMP) ## the benchmarks with short runs and small tables (about 6 min)
	$(BIN)/python -m bench.run --quick

bench-profile: $(STAMP) ## py-spy profile of one daemon recovering 10,000 rows (installs py-spy into .venv)
	$(BIN)/pip install -q py-spy
	$(BIN)/python -m bench.run --quick profile
