# One command to run the service (make run), one to run the tests (make test); `make help`
# lists every target (each target's `## ` comment is its line there).
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV := .venv
PY := $(VENV)/bin/python
PIP_INSTALL := $(PY) -m pip install --quiet --disable-pip-version-check
NODE_DIR := tests/e2e/node
HOST ?= 127.0.0.1
PORT ?= 8000
# Debian's Chromium for the browser tests (Playwright drives it; it downloads no browser).
CHROMIUM := /usr/bin/chromium
# The tests' database. Unset: PostgreSQL on 127.0.0.1:5432 when it answers, else SQLite (the
# run's first line says which); set: that database, which must answer (tests/services.py).
TEST_DATABASE_URL ?=
TEST_ENV := $(if $(TEST_DATABASE_URL),MAMBA_DATABASE_URL=$(TEST_DATABASE_URL))
# Development defaults of run, manage and superuser: MAMBA_DEBUG on, unless the environment or
# the .env file (which the settings read; MAMBA_DOTENV names another) sets it.
DOTENV := $(if $(filter undefined,$(origin MAMBA_DOTENV)),.env,$(MAMBA_DOTENV))
DEV_ENV := $(if $(shell grep -sE '^(export )?MAMBA_DEBUG=' '$(DOTENV)'),,MAMBA_DEBUG=$${MAMBA_DEBUG:-true})

.PHONY: help install run manage superuser test test-sqlite test-fast lint fmt check clean

help: ## this list
	@echo "Usage: make TARGET [HOST=$(HOST)] [PORT=$(PORT)] [ARGS=...] [TEST_DATABASE_URL=...] [PYTEST_ARGS=...]"
	@awk -F ':.*## ' '/^[a-z][a-z-]*:.*## /{printf "  make %-13s %s\n", $$1, $$2}' $(firstword $(MAKEFILE_LIST))

# The service's requirements (run, manage, superuser, static), and with the tools' (the rest).
$(VENV)/.installed-run: requirements.txt
	test -x $(PY) || "$$(scripts/find-python)" -m venv $(VENV)
	$(PIP_INSTALL) -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt
	test -x $(PY) || "$$(scripts/find-python)" -m venv $(VENV)
	$(PIP_INSTALL) -r requirements-dev.txt
	touch $@ $(VENV)/.installed-run

$(NODE_DIR)/node_modules/.package-lock.json: $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error

# Without root or sudo (or apt) it says so, and the browser tests are skipped; CI requires it.
$(CHROMIUM):
	@scripts/install-chromium $(CHROMIUM)

install: $(VENV)/.installed-dev ## create .venv with the service's and the tools' requirements

# The server is the image's (Dockerfile CMD): daphne, which drains streams on SIGTERM or Ctrl-C.
# It logs the configuration checks itself, so migrate skips them (else each warning is twice).
run: $(VENV)/.installed-run ## set up (venv, migrate) and serve on http://127.0.0.1:8000 (HOST=..., PORT=...)
	$(DEV_ENV) $(PY) manage.py migrate --noinput --skip-checks -v 0
	$(DEV_ENV) $(PY) -m mamba_site.serve --bind $(HOST) --port $(PORT)

manage: $(VENV)/.installed-run ## a manage.py command with the development defaults: ARGS="createapikey ..."
	@$(DEV_ENV) $(PY) manage.py migrate --noinput --skip-checks -v 0
	$(DEV_ENV) $(PY) manage.py $(ARGS)

superuser: $(VENV)/.installed-run ## create an admin login for /admin/
	@$(DEV_ENV) $(PY) manage.py migrate --noinput --skip-checks -v 0
	$(DEV_ENV) $(PY) manage.py createsuperuser

test: $(VENV)/.installed-dev $(NODE_DIR)/node_modules/.package-lock.json $(CHROMIUM) ## the whole suite (PostgreSQL and Redis if they answer)
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

test-sqlite: $(VENV)/.installed-dev $(NODE_DIR)/node_modules/.package-lock.json $(CHROMIUM) ## the same suite on SQLite
	MAMBA_DATABASE_URL=sqlite:///$(CURDIR)/.test.sqlite3 $(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(VENV)/.installed-dev ## the suite without the end-to-end tests (no Node.js, no browser)
	$(TEST_ENV) $(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev ## ruff, mypy (strict) and hadolint
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(VENV)/bin/hadolint Dockerfile

fmt: $(VENV)/.installed-dev ## format and fix what ruff can
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

check: $(VENV)/.installed-dev ## Django's checks and makemigrations --check
	MAMBA_DATABASE_URL=sqlite:///:memory: MAMBA_AUTH__MODE=api_key \
		DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py check --fail-level WARNING
	MAMBA_DATABASE_URL=sqlite:///:memory: MAMBA_AUTH__MODE=api_key \
		DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py makemigrations --check --dry-run

clean: ## remove .venv, node_modules and the test database file
	rm -rf $(VENV) $(NODE_DIR)/node_modules .test.sqlite3 test_*.test.sqlite3*

# Load benchmark of /chat against the fake upstream (~1 min); BENCH_ARGS="--concurrency 50" etc.
.PHONY: bench
bench: $(VENV)/.installed-dev ## load benchmark of /chat (~1 min; BENCH_ARGS="...")
	$(PY) -m bench.run $(BENCH_ARGS)

# --- Deployment: the image's steps (Dockerfile) and checks of Dockerfile and k8s/ ---
.PHONY: static deploy-check

# The Dockerfile's collectstatic step, the same command (tests/deploy checks that they agree).
static: $(VENV)/.installed-run ## collect the static files, as the image does
	MAMBA_SECRET_KEY=$${MAMBA_SECRET_KEY:-collectstatic-only} $(PY) manage.py collectstatic --noinput

# hadolint, the Kubernetes schemas (offline), env names, probes and graceful shutdown.
deploy-check: $(VENV)/.installed-dev ## hadolint, the Kubernetes manifests, probes, graceful shutdown
	$(VENV)/bin/hadolint Dockerfile
	$(PY) -m pytest tests/deploy tests/health $(PYTEST_ARGS)
