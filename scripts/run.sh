#!/usr/bin/env bash
# `make run`: migrate, print an admin login, start web + worker, ingest the sample corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PORT=${PORT:-8000}

$PY manage.py migrate --noinput -v 0
$PY manage.py bootstrap

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

.venv/bin/gunicorn embedportal.wsgi --bind "127.0.0.1:${PORT}" --workers 2 --timeout 120 \
  --access-logfile - &
pids+=($!)
$PY manage.py qcluster &
pids+=($!)

$PY manage.py create_collection sample --strategy markdown --if-not-exists
$PY manage.py enqueue README.md docs --collection sample

cat <<MSG

embedportal is running:
  admin    http://127.0.0.1:${PORT}/admin/   (login printed above)
  API      http://127.0.0.1:${PORT}/api/v1/  (docs at /api/v1/docs/)
  search   .venv/bin/python manage.py search --collection sample "how do I run the tests?"
Ctrl-C stops web and worker (the embedded database keeps running; 'make stop' stops it).
MSG
wait
