# Quick start: `make run` (everything on this machine) and `make test` (the whole suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
MANAGE := $(BIN)/python manage.py
STAMP := $(VENV)/.installed

.PHONY: install run demo test tools lint lock stop benchmark benchmark-ci image image-test

# Runtime (requirements.lock, what the image installs) and test/dev tools (requirements-dev.lock).
$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.lock -r requirements-dev.lock
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

run: install
	bash scripts/run.sh

demo: install
	$(MANAGE) migrate --noinput -v 0
	$(MANAGE) demo

# The machine tools the tests drive (chromium, chromedriver, promtool, prometheus), installed when
# missing; first, so one that cannot be installed stops here, named, not as failing tests.
tools:
	bash scripts/test-deps.sh

test: tools install
	$(BIN)/pytest

# The container image (deploy/Dockerfile), built with docker's legacy builder; where no registry
# answers, a Debian base made here stands in (BASE_IMAGE=... names another). LOCAL_MODEL=true
# bundles the local model. image-test runs it as the cluster does: web, a worker and a one-shot
# command in their own containers against a PostgreSQL container, checked by pytest (tests/image/).
image: install
	bash scripts/image.sh build

image-test: tools install
	bash scripts/image.sh test

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The quick benchmark suite, stored and compared with this machine's earlier runs (exit 3 on a
# regression; SUITE=full for the nightly set). benchmark-ci prints the comparison and never fails
# on timing: CI machines are noisy (about 100 s on 2 cores, so not part of `make test`). The corpus
# is fetched here, once (benchmarks never download it at run time).
SUITE ?= quick
benchmark: install
	$(MANAGE) migrate --noinput -v 0
	$(MANAGE) fetch_corpus
	$(MANAGE) benchmark --suite $(SUITE)

benchmark-ci: install
	$(MANAGE) migrate --noinput -v 0
	$(MANAGE) fetch_corpus
	$(MANAGE) benchmark --suite quick --trigger ci --no-fail

# Re-pin every dependency from requirements.in and requirements-dev.in (run after changing them):
# installs them into .venv, then writes both locks from what is installed (scripts/lock.py).
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.in -r requirements-dev.in
	$(BIN)/python scripts/lock.py

# Stops the embedded PostgreSQL server if it runs (reading the settings never starts it).
stop:
	$(BIN)/python -c "from embedportal.embedded_db import stop_server; from embedportal.settings import DATA_DIR; stop_server(DATA_DIR)"

# Monitoring as code (grafana/): SLO rules from pipeline/performance/slos.yaml, the Grafana dashboard,
# and their Kubernetes manifests (PrometheusRule, dashboard ConfigMap). Tests fail when these are stale.
.PHONY: dashboards rules
dashboards rules: install
	$(BIN)/python -m grafana
	$(BIN)/python deploy/generate_prometheusrule.py
