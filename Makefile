# Every task of the project, for people and CI alike (.ci/run is `make test` on a fresh machine).
#   make run      the app in the offline host, services started or installed as needed
#   make test     the test suite against real Valkey, RabbitMQ and Azurite (PYTEST_ARGS passed on)
#   make check    ruff, ruff format, mypy --strict, lint-imports (the package boundaries in pyproject.toml),
#                 checkov over infra/ (Bicep parse and Azure policies, skips justified inline;
#                 --skip-download: no Prisma Cloud account), then the tests

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# Reinstalled only when pyproject.toml changes, so every target below starts quickly.
DEPS := $(VENV)/.deps-installed
PYTEST_ARGS ?=
BENCH_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv deps services browser run test check bench clean-services

help:
	@echo "make run | test | check | services | clean-services | bench | deps"

venv deps: $(DEPS)

$(DEPS): pyproject.toml
	@if ! $(PY) -m pip --version >/dev/null 2>&1; then \
	    echo "creating $(VENV) with $(PYTHON)"; rm -rf $(VENV); \
	    $(PYTHON) -m venv $(VENV) || { echo "error: '$(PYTHON) -m venv' failed;" \
	        "on Debian/Ubuntu: sudo apt-get install -y python3.11-venv" >&2; rm -rf $(VENV); exit 1; }; \
	fi
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[local,dev]"
	@touch $@

services: $(DEPS)
	$(PY) -m local services up

# Debian's Chromium for the dashboard's browser test, installed (as root) when missing.
browser: $(DEPS)
	$(PY) -m local.services.browser

run: $(DEPS)
	@test -f local.settings.json || cp local.settings.emulator.json local.settings.json
	$(PY) -m local start $(if $(PORT),--port $(PORT))

test: $(DEPS) services browser
	$(PY) -m pytest $(PYTEST_ARGS)

check: $(DEPS)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-cache --no-logo
	$(VENV)/bin/checkov --directory infra --framework bicep --skip-download --compact --quiet
	@$(MAKE) --no-print-directory test

# h2load (--h1) is the load generator: C, HTTP/1.1 keep-alive, one thread, exact request counts.
bench: $(DEPS)
	@command -v h2load >/dev/null || { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client >/dev/null; } \
	    || { echo "error: h2load is missing: sudo apt-get install -y nghttp2-client" >&2; exit 1; }
	$(PY) -m local bench $(BENCH_ARGS)

clean-services: $(DEPS)
	$(PY) -m local services down
