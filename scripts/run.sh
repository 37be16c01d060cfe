#!/usr/bin/env bash
# `make run`: migrate, print an admin login, start web + worker + test runner, ingest the sample corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PORT=${PORT:-8000}
fail() { echo "embedportal: $*" >&2; exit 1; }
# A busy port is refused before anything starts (with SO_REUSEADDR, as gunicorn binds: a
# port in TIME_WAIT is free, one another server listens on is not).
$PY - "$PORT" <<'PY' || fail "port ${PORT} on 127.0.0.1 is in use (another embedportal or server?): stop it, or choose another port: PORT=8001 make run"
import socket, sys
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", int(sys.argv[1])))
    except OSError:
        sys.exit(1)
PY
# gunicorn's and django-q2's processes share one metrics directory (docs/operations.md);
# files left from a previous run would be added in, so start clean. It lives in the data
# directory: two stacks started from one checkout (PORT and EMBEDPORTAL_DATA_DIR apart) shared
# the checkout's var/prometheus, the second wiped the first's counters and each served both.
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-${EMBEDPORTAL_DATA_DIR:-$PWD/var}/prometheus}"
rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

$PY manage.py migrate --noinput -v 0
$PY manage.py bootstrap

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

.venv/bin/gunicorn embedportal.wsgi --config python:embedportal.gunicorn_conf --bind "127.0.0.1:${PORT}" --workers 2 --timeout 120 \
  --access-logfile - &
web=$!
pids+=($web)
# Wait for the web server to answer before starting anything else; if it exits instead (the
# port taken meanwhile, a boot error), stop: never announce a portal whose web is not up.
until (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null; do
  kill -0 "$web" 2>/dev/null || fail "the web server (gunicorn) exited without serving on 127.0.0.1:${PORT}; its log is above"
  sleep 0.2
done
kill -0 "$web" 2>/dev/null || fail "the web server (gunicorn) exited without serving on 127.0.0.1:${PORT}; its log is above"
# The worker, started again when it ends abnormally, as Kubernetes restarts a worker container: a
# cluster one of whose processes died (out of memory, kill -9) ends whole with code 70
# (embedportal/management/commands/qcluster.py). A stop (code 0) ends this loop, and a cluster
# failing again at once waits longer each time, up to a minute. Each cluster runs in its own
# session: Ctrl-C signals the whole foreground group, and django-q2's cluster can deadlock when its
# sentinel is signalled at the same moment as the cluster process (Cluster.stop blocks in
# Event.set). The trap stops it through its main process alone.
supervise_worker() {
  local child="" delay=1 rc started
  # Ctrl-C's INT (this loop runs in the foreground group, with INT at its default: the script traps
  # it) or the script's TERM stops it, whichever comes first, once: a second signal to a stopping
  # cluster is the deadlock above. Untrapped, INT would end this loop alone and orphan the cluster.
  trap 'trap "" TERM INT; [ -z "$child" ] || { kill "$child" 2>/dev/null; wait "$child" 2>/dev/null; }; exit 0' TERM INT
  while true; do
    setsid $PY manage.py qcluster &
    child=$! started=$SECONDS
    rc=0 && wait "$child" || rc=$?
    [ "$rc" -eq 0 ] && return 0
    # What is left of it: a main process killed outright leaves its sentinel and workers running, orphaned.
    kill -KILL -- "-$child" 2>/dev/null || true
    ((SECONDS - started < 60)) || delay=1
    echo "embedportal: the worker (qcluster) exited with code ${rc}; starting it again in ${delay} s" >&2
    sleep "$delay" &
    child=$!
    wait "$child" || true
    delay=$((delay < 32 ? delay * 2 : 60))
  done
}
supervise_worker &
pids+=($!)
# Operations test runs (API, admin, schedules) execute here, never in a worker slot (docs/ops-tests.md).
$PY manage.py run_test_runner &
pids+=($!)

# The documentation site the admin links to (/docs/), built beside the first ingest (about 10 s).
$PY manage.py docs build >"${EMBEDPORTAL_DATA_DIR:-var}/docs-build.log" 2>&1 || echo "embedportal: the docs site did not build; see ${EMBEDPORTAL_DATA_DIR:-var}/docs-build.log" >&2 &
$PY manage.py create_collection sample --strategy markdown --if-not-exists
# Markdown only: docs/ also holds the site's assets (scripts, images), which are not documents. A first
# load whatever its size (29 pages, under EMBEDPORTAL_BACKFILL_MIN_DOCUMENTS): indexed once at the end, its
# batches judged by throughput, not document latency (one 20 to 35 s batch on the bundled model, it fired
# EmbeddingPipelineDocumentLatencyDegraded on every fresh install).
EMBEDPORTAL_BACKFILL_MIN_DOCUMENTS=1 $PY manage.py enqueue README.md 'docs/**/*.md' --collection sample

cat <<MSG

embedportal is running:
  admin    http://127.0.0.1:${PORT}/admin/   (login printed above)
  API      http://127.0.0.1:${PORT}/api/v1/  (docs at /api/v1/docs/; token: manage.py create_api_token admin --name dev --scope write)
  metrics  http://127.0.0.1:${PORT}/metrics    health http://127.0.0.1:${PORT}/api/v1/health/
  search   .venv/bin/python manage.py search --collection sample "how do I run the tests?"
Ctrl-C stops web, worker and test runner (the embedded database keeps running; 'make stop' stops it).
MSG
wait
