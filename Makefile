# Quick start: `make run` (everything on this machine) and `make test` (the whole suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
MANAGE := $(BIN)/python manage.py
STAMP := $(VENV)/.installed

.PHONY: install run demo test lint lock stop benchmark

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.lock
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

run: install
	bash scripts/run.sh

demo: install
	$(MANAGE) migrate --noinput -v 0
	$(MANAGE) demo

# Machine tools first (chromium, chromedriver, promtool, prometheus; scripts/test-deps.sh says
# what to install when it cannot), so a missing one stops here and not as failing tests.
test: install
	bash scripts/test-deps.sh
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

benchmark: install
	$(MANAGE) migrate --noinput -v 0
	$(MANAGE) benchmark_ingest --corpus django-docs --model local/hash-384

# Re-pin every dependency from requirements.in (run after changing it).
lock:
	$(BIN)/pip install -q -r requirements.in
	$(BIN)/pip freeze --all --exclude-editable | sed -E 's/^torch==([0-9.]+)\+cpu$$/torch==\1/' > requirements.lock

stop:
	$(BIN)/python -c "import django,os;os.environ.setdefault('DJANGO_SETTINGS_MODULE','embedportal.settings');from embedportal.embedded_db import stop_server;from embedportal.settings import DATA_DIR;stop_server(DATA_DIR)"
