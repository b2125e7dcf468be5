# One command to run the service (make run), one to run the tests (make test).
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV := .venv
PY := $(VENV)/bin/python
NODE_DIR := tests/e2e/node
HOST ?= 127.0.0.1
PORT ?= 8000
# Debian's Chromium for the browser tests (Playwright drives it; it downloads no browser).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# PostgreSQL for the test suite; `make test-sqlite` runs it on SQLite.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/mamba

.PHONY: help install run superuser test test-sqlite test-fast lint fmt check clean

help:
	@echo "make run          set up (venv, install, migrate) and serve on http://$(HOST):$(PORT)"
	@echo "make superuser    create an admin login for /admin/"
	@echo "make test         set up and run the whole test suite (PostgreSQL)"
	@echo "make test-sqlite  the same suite on SQLite"
	@echo "make lint | fmt | check"

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || "$$(scripts/find-python)" -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(NODE_DIR)/node_modules/.package-lock.json: $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error

$(CHROMIUM):
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium \
		|| { $(SUDO) apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }

install: $(VENV)/.installed

# Development defaults: DEBUG on, and without an OpenAI key the offline model answers. The
# server is the image's (Dockerfile CMD): daphne, which drains streams on SIGTERM or Ctrl-C.
run: install
	MAMBA_DEBUG=$${MAMBA_DEBUG:-true} $(PY) manage.py migrate --noinput
	MAMBA_DEBUG=$${MAMBA_DEBUG:-true} $(PY) -m mamba_site.serve --bind $(HOST) --port $(PORT)

superuser: install
	MAMBA_DEBUG=$${MAMBA_DEBUG:-true} $(PY) manage.py migrate --noinput
	MAMBA_DEBUG=$${MAMBA_DEBUG:-true} $(PY) manage.py createsuperuser

test: install $(NODE_DIR)/node_modules/.package-lock.json $(CHROMIUM)
	MAMBA_DATABASE_URL=$(TEST_DATABASE_URL) $(PY) -m pytest $(PYTEST_ARGS)

test-sqlite: install $(NODE_DIR)/node_modules/.package-lock.json $(CHROMIUM)
	MAMBA_DATABASE_URL=sqlite:///$(CURDIR)/.test.sqlite3 $(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	MAMBA_DATABASE_URL=$(TEST_DATABASE_URL) $(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(VENV)/bin/hadolint Dockerfile

fmt: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

check: install
	MAMBA_DATABASE_URL=sqlite:///:memory: MAMBA_AUTH__MODE=api_key \
		DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py check --fail-level WARNING
	MAMBA_DATABASE_URL=sqlite:///:memory: MAMBA_AUTH__MODE=api_key \
		DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) $(NODE_DIR)/node_modules .test.sqlite3

# Load benchmark of /chat against the fake upstream (~1 min); BENCH_ARGS="--concurrency 50" etc.
.PHONY: bench
bench: install
	$(PY) -m bench.run $(BENCH_ARGS)

# --- Deployment: the image's steps (Dockerfile) and checks of Dockerfile and k8s/ ---
.PHONY: static deploy-check

# The Dockerfile's collectstatic step, the same command (tests/deploy checks that they agree).
static: install
	MAMBA_SECRET_KEY=$${MAMBA_SECRET_KEY:-collectstatic-only} $(PY) manage.py collectstatic --noinput

# hadolint, the Kubernetes schemas (offline), env names, probes and graceful shutdown.
deploy-check: install
	$(VENV)/bin/hadolint Dockerfile
	$(PY) -m pytest tests/deploy tests/health $(PYTEST_ARGS)
