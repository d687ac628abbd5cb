# Developer and CI entry points. `make test` is what CI runs (via .ci/run).
#
#   make venv    build .venv from the lock file (re-runs when the lock or setup.cfg changes)
#   make demo    the example DAGs end to end against the emulator (DEMO_ARGS=--verbose for logs)
#   make demo-distributed  the load chain on CeleryExecutor + PostgreSQL + Redis with 1-3
#                workers, a worker killed, the scheduler restarted: prints the measured table
#                (DISTRIBUTED_ARGS="--size-mb 64" for a smaller run; docs/deployment.md)
#   make test    ruff check + ruff format --check + the docs build, warnings as errors +
#                the import contracts (lint-imports, .importlinter) + the Debian packages
#                the tests start (scripts/system-packages.sh: Chromium, Redis, PostgreSQL) + pytest
#                (PYTEST_ARGS="-k foo" to narrow)
#   make docs    build the documentation site into build/site/ (mkdocs, warnings as errors)
#   make lint    ruff check + ruff format --check
#   make format  ruff format + ruff check --fix
#   make lock    rebuild requirements/lock-py3.11.txt from a fresh temporary venv
#   make bench   run every benchmarks/*.py
#   make clean   remove build artefacts and caches (keeps .venv; `rm -rf .venv` for that)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

VENV        := .venv
BIN         := $(VENV)/bin
PYTHON      := $(BIN)/python
STAMP       := $(VENV)/.installed
LOCK        := requirements/lock-py3.11.txt
EXTRAS      := airflow,emulator,dev
PYTEST_ARGS ?=
DEMO_ARGS   ?=
DISTRIBUTED_ARGS ?=

# Prints the interpreter used to create virtualenvs: python3.11, else python3 if it is >= 3.11.
find_python = for p in python3.11 python3; do \
	  if command -v $$p >/dev/null 2>&1 \
	     && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then \
	    echo $$p; break; \
	  fi; \
	done

.PHONY: venv test lint format lock bench clean demo demo-distributed docs

venv: $(STAMP)

$(STAMP): $(LOCK) setup.cfg setup.py airflow_provider_odps_tunnel/tunnel/codec/_record_codec_c.pyx
	@if [ ! -x $(PYTHON) ]; then \
	  py=$$($(find_python)); \
	  if [ -z "$$py" ]; then echo "error: need python3.11 (or a python3 >= 3.11) on PATH" >&2; exit 1; fi; \
	  echo "+ $$py -m venv $(VENV)  ($$($$py --version))"; \
	  $$py -m venv $(VENV); \
	fi
	$(PYTHON) -m pip install --upgrade pip
	$(PYTHON) -m pip install -r $(LOCK)
	$(PYTHON) -m pip install --no-deps --no-build-isolation -e .
	touch $@

# Runs every check even if an earlier one fails, then fails if any failed.
test: venv
	@status=0; \
	echo "+ ruff check ."; $(BIN)/ruff check . || status=1; \
	echo "+ ruff format --check ."; $(BIN)/ruff format --check . || status=1; \
	echo "+ mkdocs build --strict"; $(BIN)/mkdocs build --strict || status=1; \
	echo "+ lint-imports"; $(BIN)/lint-imports --no-cache --no-logo .importlinter || status=1; \
	echo "+ scripts/system-packages.sh"; scripts/system-packages.sh || status=1; \
	echo "+ pytest $(PYTEST_ARGS)"; $(PYTHON) -m pytest $(PYTEST_ARGS) || status=1; \
	exit $$status

# The example DAGs against a throw-away emulator and Airflow home; prints what was loaded.
demo: venv
	$(PYTHON) scripts/demo.py $(DEMO_ARGS)

# A distributed Airflow on this machine (PostgreSQL, Redis, Celery workers; installed by
# scripts/system-packages.sh when missing) loading >= 256 MB; prints the results table.
demo-distributed: venv
	scripts/system-packages.sh
	PYTHONPATH=scripts $(PYTHON) -m distributed_airflow $(DISTRIBUTED_ARGS)

docs: venv
	$(BIN)/mkdocs build --strict

lint: venv
	@status=0; \
	$(BIN)/ruff check . || status=1; \
	$(BIN)/ruff format --check . || status=1; \
	exit $$status

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Resolves the newest versions allowed by setup.cfg in a throw-away venv and pins all of them.
lock:
	@py=$$($(find_python)); \
	if [ -z "$$py" ]; then echo "error: need python3.11 (or a python3 >= 3.11) on PATH" >&2; exit 1; fi; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$$py -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install --upgrade pip setuptools wheel; \
	"$$tmp/venv/bin/python" -m pip install -e '.[$(EXTRAS)]'; \
	"$$tmp/venv/bin/python" -m pip check; \
	mkdir -p $(dir $(LOCK)); \
	{ \
	  echo "# Every package of the project's virtualenv, pinned ($$("$$tmp/venv/bin/python" --version))."; \
	  echo "# Made by \`make lock\`: a fresh venv, \`pip install -e .[$(EXTRAS)]\`, then"; \
	  echo "# \`pip freeze --all --exclude-editable\` minus pip itself and this project."; \
	  echo "# Regenerate with \`make lock\`; \`make venv\` installs it (then \`pip install --no-deps -e .\`)."; \
	  "$$tmp/venv/bin/python" -m pip freeze --all --exclude-editable \
	    | grep -viE '^(pip|airflow-provider-odps-tunnel)( |==|@)'; \
	} > "$(LOCK).new"; \
	mv "$(LOCK).new" $(LOCK); \
	echo "wrote $(LOCK) ($$(grep -vc '^#' $(LOCK)) packages)"

bench: venv
	@shopt -s nullglob; files=(benchmarks/*.py); \
	if [ $${#files[@]} -eq 0 ]; then echo "no benchmarks/*.py to run"; exit 0; fi; \
	for f in "$${files[@]}"; do echo "== $$f"; $(PYTHON) "$$f"; done

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .hypothesis \
	  benchmarks/results benchmarks/out .benchmarks .emulator-data
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
