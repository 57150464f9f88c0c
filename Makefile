# Runyard: `make run` starts it, `make test` checks it. Both set up .venv first.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.requirements-installed
# The official @trigger.dev/sdk that tests/sdk drives (package.json, package-lock.json).
NPM_STAMP := node_modules/.package-lock-installed
# Tests keep their own embedded PostgreSQL and Redis, apart from `make run`'s var/.
TEST_VAR ?= $(CURDIR)/var/test
STOP_SERVERS := $(PY) -W ignore -c "import pathlib, sys; from dashboard import embedded; embedded.stop_all(pathlib.Path(sys.argv[1]))"
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: run test lint fmt deps node-deps chromium wrk clean bench

run: deps
	$(PY) manage.py up

test: deps node-deps chromium wrk
	export RUNYARD_VAR=$(TEST_VAR); trap '$(STOP_SERVERS) $(TEST_VAR)' EXIT; set -ex; \
	$(BIN)/ruff check .; \
	$(BIN)/ruff format --check .; \
	$(BIN)/mypy .; \
	$(BIN)/lint-imports; \
	$(PY) manage.py makemigrations --check --dry-run; \
	$(PY) -m pytest $(PYTEST_ARGS)

# Every benchmark, then docs/performance.md rewritten (bench/; 15 to 30 minutes on 2 cores).
# Some figures: make bench BENCH_ARGS="--only trigger,e2e-api --write-docs" (replaces only theirs).
BENCH_VAR ?= $(CURDIR)/var/bench
bench: deps wrk
	export RUNYARD_VAR=$(BENCH_VAR); trap '$(STOP_SERVERS) $(BENCH_VAR)' EXIT; \
	$(PY) -m bench $(BENCH_ARGS)

lint: deps
	export RUNYARD_VAR=$(TEST_VAR); trap '$(STOP_SERVERS) $(TEST_VAR)' EXIT; set -ex; \
	$(BIN)/ruff check .; \
	$(BIN)/ruff format --check .; \
	$(BIN)/mypy .; \
	$(BIN)/lint-imports

fmt: deps
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

deps: $(STAMP)

# Reinstalls only when requirements.txt is newer than the last install.
$(STAMP): requirements.txt | $(PY)
	$(PY) -m pip install --disable-pip-version-check -r requirements.txt
	touch $@

$(PY):
	$(PYTHON) -m venv $(VENV)

node-deps: $(NPM_STAMP)

# Reinstalls only when node_modules is missing or package-lock.json is newer than the last install.
$(NPM_STAMP): package-lock.json
	npm ci --no-audit --no-fund
	touch $@

chromium:
	@test -x /usr/bin/chromium || { \
		$(SUDO) apt-get update && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends chromium; }

# The C HTTP load generator of the benchmarks' HTTP figures (bench/wrk.py).
wrk:
	@command -v wrk >/dev/null || { \
		$(SUDO) apt-get update && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends wrk; }

# Stops the embedded servers of var/ and var/*/ before deleting their files.
clean:
	@for dir in var var/*/; do \
		[ -d "$$dir" ] && $(STOP_SERVERS) "$$dir"; \
	done; true
	rm -rf var
