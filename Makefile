# Two commands for a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt 2>/dev/null | cksum | cut -d' ' -f1)

# Services for the test suite (the machine's own PostgreSQL and Redis on 127.0.0.1).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/iqa
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15

# The suite on this many processes (pytest-xdist; each has a test database and a Redis
# database of its own). One by default: on a 2-core machine three took as long as one
# (35.5 min against 32-38), the machine being busy either way; more cores, more workers.
TEST_WORKERS ?= 1

HOST ?= 127.0.0.1
PORT ?= 8000

CHROMIUM := /usr/bin/chromium

.PHONY: install run test services browser lint format docs

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

# Start PostgreSQL and Redis when they are not answering (commands of this machine kind).
services:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; pg_isready -h 127.0.0.1 -p 5432
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
	@for i in $$(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done; redis-cli -h 127.0.0.1 -p 6379 ping

# Debian's Chromium for the annotator page's browser tests (Playwright drives it; it never
# downloads a browser of its own).
browser:
	@test -x $(CHROMIUM) || apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)
	@test -x $(CHROMIUM)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: install services browser lint
	DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
		$(PY) -m pytest $(if $(filter 1,$(TEST_WORKERS)),$(PYTEST_ARGS),\
		-n $(TEST_WORKERS) --dist loadgroup -m "not serial" $(PYTEST_ARGS)) \
		$(if $(filter 1,$(TEST_WORKERS)),,&& DATABASE_URL=$(TEST_DATABASE_URL) \
		CELERY_BROKER_URL=$(TEST_BROKER_URL) $(PY) -m pytest -m serial $(PYTEST_ARGS))

run: install
	@bash scripts/run.sh $(HOST) $(PORT)

# The documentation site, built offline into site/ (strict: a broken link fails it).
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site
