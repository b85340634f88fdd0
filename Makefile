# notifier: `make run` starts the whole service, `make test` runs every test.
# Both set everything up on a fresh machine: a virtualenv, pinned requirements, the database.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# The newest Python >= 3.12 on this machine: python3.13, else python3.12 (pyenv builds too).
PYTHON ?= $(shell for p in python3.13 $$HOME/.pyenv/versions/3.13*/bin/python3.13 \
	/usr/local/bin/python3.13 /usr/bin/python3.13 python3.12 \
	$$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do \
	if $$p -c 'import sys; assert sys.version_info >= (3, 12)' >/dev/null 2>&1; then echo $$p; break; fi; \
	done)
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
# The provider sandbox's HTTP port (its inbox page); APNs listens on 8443, SMTP on 1025.
SANDBOX_PORT ?= 8025
export PORT

.PHONY: help venv run test test-faults test-fast bench bench-quick lint format migrate demo services clean

help:
	@echo "make run     - set up, migrate, load the demo tenant, start web + workers + beat + sandbox"
	@echo "make test    - set up and run the whole test suite"
	@echo "make test-faults - the long fault-injection scenarios, with their ledger tables"
	@echo "make bench   - the benchmarks on private servers, beside the naive baseline (< 20 min)"
	@echo "make bench-quick - the same at small sizes, once each (about 4 min)"
	@echo "make lint    - ruff (lint + format check) and mypy"
	@echo "make format  - apply ruff's formatting and fixes"

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	@test -n "$(PYTHON)" || { echo "Python 3.12+ not found: install python3.13 or python3.12" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	@touch $@

venv: $(VENV)/.installed

services: venv
	@$(PY) manage.py check_services

migrate: services
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py load_demo

run: demo
	@KEY=$$($(PY) manage.py create_api_key --tenant demo --scope send --scope read --scope manage --name "make run" | tail -1); \
	echo; \
	echo "  API key (demo tenant, shown once): $$KEY"; \
	echo "  API docs:  http://127.0.0.1:$(PORT)/api/docs/"; \
	echo "  Admin:     http://127.0.0.1:$(PORT)/admin/  (user 'admin', password printed above on first run)"; \
	echo "  Health:    http://127.0.0.1:$(PORT)/readyz"; \
	if [ -z "$$NOTIFIER_PROVIDERS_JSON" ]; then \
	echo "  Sandbox:   http://127.0.0.1:$(SANDBOX_PORT)/  (every message the provider stand-ins accepted, per recipient)"; \
	else echo "  Providers: from NOTIFIER_PROVIDERS_JSON (no sandbox)"; fi; \
	echo "  Try:       curl -X POST http://127.0.0.1:$(PORT)/api/v1/notifications -H \"Authorization: Bearer $$KEY\" \\"; \
	echo "               -H 'Content-Type: application/json' -d '{\"user_ids\": [\"user-1\"], \"notification_type\": \"order_shipped\", \"template_vars\": {\"order_id\": \"1042\", \"carrier\": \"UPS\", \"eta\": \"Tuesday\"}}'"; \
	echo
	@if [ -z "$$NOTIFIER_PROVIDERS_JSON" ]; then \
	  $(PY) manage.py provider_sandbox --prepare --state-dir var/sandbox --http-port $(SANDBOX_PORT); fi
	NOTIFIER_PORT=$(PORT) SANDBOX_PORT=$(SANDBOX_PORT) NOTIFIER_WEBHOOK_BASE_URL=http://127.0.0.1:$(PORT) \
	  NOTIFIER_SANDBOX_CONNECTION=$(CURDIR)/var/sandbox/sandbox.json \
	  PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/honcho start -f Procfile \
	  $(if $(NOTIFIER_PROVIDERS_JSON),web relay planner critical transactional bulk beat)

test: services
	$(PY) -m pytest

# The long variants of the fault scenarios (tests/faults), with their ledger tables printed.
test-faults: services
	$(PY) -m pytest tests/faults -m faults -s --timeout=1800

# Benchmarks (bench/README.md): starts its own PostgreSQL, RabbitMQ, Redis and provider sandbox;
# never part of make test. BENCH_ARGS passes options, e.g. BENCH_ARGS="--latency-ms 100".
bench: venv
	$(PY) -m bench.run $(BENCH_ARGS)

bench-quick: venv
	$(PY) -m bench.run --quick $(BENCH_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
