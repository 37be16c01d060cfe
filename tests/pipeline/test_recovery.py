"""Recovery takes seconds, not the lease: short renewed leases, a worker back from a database error
gives back its own claims, stopped and dead workers stop counting as alive, stranded documents
count as pending work, and the API answers its JSON error shape (503) while the database is away."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from datetime import timedelta

import psutil
import psycopg
import pytest
import time_machine
from django.conf import settings
from django.db import DatabaseError, OperationalError, connection
from django.test import RequestFactory
from django.utils import timezone
from django_q.models import OrmQ
from psycopg.errors import DeadlockDetected, SerializationFailure

from embedportal.api.errors import exception_handler, server_error
from pipeline import health, signals
from pipeline.choices import DocumentStatus, WorkerRole
from pipeline.models import Chunk, Document, WorkerHeartbeat, process_name
from pipeline.pipeline import EmbeddingIngestionPipeline, RetryPolicy
from pipeline.queue import IncomingDocument, enqueue
from tests.conftest import ROOT, database_url, manage, wait_for
from tests.tools import run_snippet


@pytest.mark.django_db(transaction=True)
def test_killed_worker_documents_are_embedded_by_another_within_one_short_lease(fake_collection, fake_provider):
    assert settings.EMBEDPORTAL_LEASE_SECONDS == 30  # the default: tens of seconds, renewed while alive
    fake_provider.delay = 60  # the worker hangs in its embedding call until killed
    enqueue(fake_collection, [IncomingDocument(f"d{i}", f"document number {i}") for i in range(6)])
    worker = manage("run_pipeline", env={"FAKE_PROVIDER_KEY": "sk-test-secret-123456", "EMBEDPORTAL_CLAIM_BATCH": "6"})
    try:
        wait_for(lambda: len(fake_provider.requests) >= 1)
        killed_at = timezone.now()
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    leases = set(Document.objects.values_list("status", "lease_expires_at"))
    assert {status for status, _ in leases} == {DocumentStatus.PROCESSING}
    # Lease arithmetic, not wall time: every lease runs out at most one lease after the kill.
    expires = max(at for _, at in leases)
    assert expires <= killed_at + timedelta(seconds=settings.EMBEDPORTAL_LEASE_SECONDS)

    fake_provider.delay = 0
    with time_machine.travel(killed_at, tick=False) as traveller:
        # Before it runs out, the queue check already counts them (the dead worker's heartbeat is
        # still fresh, so it is the lease that tells) once it has expired:
        traveller.move_to(expires + timedelta(seconds=1))
        WorkerHeartbeat.objects.beat(WorkerRole.WORKER, "another-host:1")
        queue = health.check_queue()
        assert queue.details["stranded_documents"] == 6
        assert "no pending work" not in queue.reason and "6 held by expired or dead leases" in queue.reason
        report = EmbeddingIngestionPipeline().drain()
    assert report.embedded == 6
    assert Document.objects.filter(status=DocumentStatus.EMBEDDED, attempts=2).count() == 6
    assert Chunk.objects.count() == 6


@pytest.mark.django_db
def test_the_queue_check_counts_a_dead_workers_unexpired_leases_as_pending_work(hash_collection):
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"text {i}") for i in range(32)])
    Document.objects.claim("dead-host:4242:abcdef", 32, timedelta(minutes=5))
    WorkerHeartbeat.objects.beat(WorkerRole.WORKER, "live-host:1")
    queue = health.check_queue()
    assert queue.ok
    assert queue.details["stranded_documents"] == 32
    assert queue.reason.startswith("1 worker(s) alive; oldest pending work waited")
    assert queue.reason.endswith("; 32 held by expired or dead leases")


@pytest.mark.django_db
def test_stopped_and_dead_workers_stop_counting_as_alive_within_the_heartbeat_max_age(db):
    max_age = timedelta(seconds=settings.EMBEDPORTAL_HEARTBEAT_MAX_AGE)
    assert max_age == timedelta(seconds=45)  # 3 x the 15 s heartbeat interval
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        WorkerHeartbeat.objects.beat(WorkerRole.WORKER, "w:1")
        WorkerHeartbeat.objects.beat(WorkerRole.SCHEDULE, "q:2")
        traveller.shift(timedelta(seconds=46))
        # The every-minute schedule's row lives longer: it beats only once a minute.
        assert list(WorkerHeartbeat.objects.fresh(max_age).values_list("worker", flat=True)) == ["q:2"]
        traveller.shift(timedelta(seconds=105))
        assert not WorkerHeartbeat.objects.fresh(max_age).exists()


@pytest.mark.django_db
def test_a_starting_worker_forgets_the_killed_processes_of_its_host(db):
    """A cluster restarted after a kill counted its dead predecessors alive until their rows aged out (45 s)."""
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    killed.kill()
    killed.wait()
    # Killed and not yet reaped (a killed cluster's workers until their new parent reaps them): dead too.
    zombie = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    zombie.kill()
    wait_for(lambda: psutil.Process(zombie.pid).status() == psutil.STATUS_ZOMBIE)
    host = socket.gethostname()
    for worker in (f"{host}:{killed.pid}", f"{host}:{zombie.pid}", process_name(), f"{host}:not-a-pid", "other-host:1"):
        WorkerHeartbeat.objects.beat(WorkerRole.WORKER, worker)
    signals.worker_starting.send(sender=None)
    zombie.wait()
    left = set(WorkerHeartbeat.objects.values_list("worker", flat=True))
    assert left == {process_name(), f"{host}:not-a-pid", "other-host:1"}


@pytest.mark.django_db
def test_a_starting_worker_wakes_the_workers_for_a_killed_workers_leases(hash_collection):
    """A cluster restarted after a kill idled until the minute's drain schedule (its scheduler's first pass is
    30 s after the start): the killed cluster's drain tasks stay taken until Q_RETRY, and nothing else
    announced the dead worker's leases."""
    OrmQ.objects.all().delete()
    signals.worker_starting.send(sender=None)
    assert not OrmQ.objects.exists()  # nothing to do: no drain tasks
    enqueue(hash_collection, [IncomingDocument("d", "text")])
    Document.objects.claim("dead-host:4242:abcdef", 1, timedelta(seconds=30))
    OrmQ.objects.all().delete()
    # The killed cluster's own drain tasks: taken, locked until Q_RETRY.
    OrmQ.objects.create(key="embedportal", payload="taken", lock=timezone.now() + timedelta(seconds=600))
    signals.worker_starting.send(sender=None)
    assert OrmQ.objects.filter(lock__lte=timezone.now()).count() == settings.Q_CLUSTER["workers"]


@pytest.mark.django_db
def test_a_cleanly_stopped_worker_removes_its_heartbeat(hash_collection):
    WorkerHeartbeat.objects.beat(WorkerRole.WORKER)
    WorkerHeartbeat.objects.beat(WorkerRole.WORKER, "other-host:1")
    stopped = _Stop(lambda n: None)
    stopped.flag = True
    EmbeddingIngestionPipeline().run_forever(stopped)
    assert list(WorkerHeartbeat.objects.values_list("worker", flat=True)) == ["other-host:1"]
    assert not WorkerHeartbeat.objects.filter(worker=process_name()).exists()


class _Stop:
    """run_forever's stop event, scripted: `on_wait(n)` runs at the worker's n-th wait."""

    def __init__(self, on_wait) -> None:
        self.on_wait, self.waits, self.flag = on_wait, 0, False

    def is_set(self) -> bool:
        return self.flag

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        self.on_wait(self.waits)
        return self.flag


@pytest.mark.django_db(transaction=True)
def test_a_worker_back_from_a_database_outage_gives_back_its_claims_and_logs_one_traceback(hash_collection, caplog):
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"text {i}") for i in range(5)])
    pipeline = EmbeddingIngestionPipeline()
    # A batch the outage cut short: still leased to this worker, for the whole lease.
    cut_short = {d.pk for d in Document.objects.claim(pipeline.worker_id, 3, timedelta(minutes=5))}
    real = dict(connection.settings_dict)
    connection.close()
    # The database is unreachable: nothing listens on the discard port.
    connection.settings_dict.update(
        HOST="127.0.0.1", PORT="9", OPTIONS={**real.get("OPTIONS", {}), "host": "127.0.0.1"}
    )

    def on_wait(n: int) -> None:
        if n == 4:  # three retries later, the database is back
            connection.settings_dict.clear()
            connection.settings_dict.update(real)
            connection.close()
        if n == 5:  # the worker went idle after catching up
            stop.flag = True

    stop = _Stop(on_wait)
    try:
        with caplog.at_level(logging.WARNING, logger="pipeline.pipeline"):
            report = pipeline.run_forever(stop)
    finally:
        connection.settings_dict.clear()
        connection.settings_dict.update(real)
        connection.close()

    records = [r for r in caplog.records if "database" in r.getMessage()]
    assert sum(1 for r in records if r.exc_info) == 1, "one traceback, at the first failure"
    retries = [r.getMessage() for r in records if "still failing" in r.getMessage()]
    assert [m.split("(retry ")[1].split(")")[0] for m in retries] == ["1", "2", "3"]
    assert any("gave back 3 document(s)" in r.getMessage() for r in records)
    # Given back at once rather than after the 5-minute lease: this same worker embedded them.
    assert report.embedded == 5
    assert set(Document.objects.values_list("status", flat=True)) == {DocumentStatus.EMBEDDED}
    assert Document.objects.filter(pk__in=cut_short, attempts=2).count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_batch_an_outage_cuts_short_still_counts_its_connection_lost_tries(fake_collection, fake_provider):
    """The database went away between embedding and storage: storage's tries failed as connection_lost,
    then failing the documents failed too, and the batch was never recorded, its errors with it. Through
    a real outage embedding_pipeline_errors_total{error_type="connection_lost"} stayed flat, and
    EmbeddingPipelineDatabaseConnectionLost, which reads it, never fired."""
    from pipeline.metrics import ERRORS

    enqueue(fake_collection, [IncomingDocument(f"d{i}", f"text {i}") for i in range(2)])
    lost = ERRORS.labels(error_type="connection_lost", collection=fake_collection.name)
    before = lost._value.get()
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        worker_backend = cur.fetchone()[0]
    url, real = database_url(), dict(connection.settings_dict)
    answer = fake_provider.answer

    def lose_the_database_then_answer(*args) -> None:
        # Every thread's connection reads this one dict: reconnecting finds nothing on the discard port.
        connection.settings_dict.update(
            HOST="127.0.0.1", PORT="9", OPTIONS={**real.get("OPTIONS", {}), "host": "127.0.0.1"}
        )
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [worker_backend])
        answer(*args)

    fake_provider.answer = lose_the_database_then_answer
    pipeline = EmbeddingIngestionPipeline(retry=RetryPolicy.from_settings(sleep=lambda seconds: None))
    try:
        with pytest.raises(DatabaseError):
            pipeline.run_once()
    finally:
        connection.settings_dict.clear()
        connection.settings_dict.update(real)
        connection.close()
    assert lost._value.get() - before == settings.EMBEDPORTAL_BATCH_TRIES
    # Nothing could be written: the documents return to the queue when their leases run out.
    assert set(Document.objects.values_list("status", flat=True)) == {DocumentStatus.PROCESSING}


# A request to the API with every database connection refused (DATABASE_URL at a closed port).
API_WITHOUT_DATABASE = """
import json, django
django.setup()
from django.test import Client
client = Client(raise_request_exception=False)
out = {}
for path, headers in (("/api/v1/collections/", {"HTTP_AUTHORIZATION": "Token 0123456789abcdef"}),
                      ("/api/v1/documents/", {})):
    if not headers:
        client.cookies["sessionid"] = "a-session-the-database-would-know"  # session authentication
    r = client.get(path, **headers)
    out[path] = [r.status_code, r.headers.get("content-type"), r.headers.get("retry-after"), r.content.decode()]
print(json.dumps(out))
"""


def test_the_api_answers_503_json_while_the_database_is_unreachable():
    env = {
        **os.environ,
        "DATABASE_URL": "postgresql://nobody:secret@127.0.0.1:9/nothing",
        "DJANGO_SETTINGS_MODULE": "embedportal.settings",
    }
    child = subprocess.run(
        [sys.executable, "-c", API_WITHOUT_DATABASE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 0, child.stderr
    answers = json.loads(child.stdout.strip().splitlines()[-1])
    for path, (status, content_type, retry_after, body) in answers.items():
        assert (status, content_type, retry_after) == (503, "application/json", "5"), (path, body)
        assert json.loads(body) == {
            "error": {"status": 503, "message": "the database is unavailable; try again shortly", "details": {}}
        }
        assert "<html" not in body.lower() and "secret" not in body


# Requests while the database's address accepts connections and never answers (a hung server, a
# host gone behind a load balancer): each must end, not wait on the connection for minutes.
SILENT_DATABASE = """
import json, time, django
django.setup()
from django.test import Client
client = Client(raise_request_exception=False)
out = {}
for path, headers in (("/readyz", {}), ("/api/v1/collections/", {"HTTP_AUTHORIZATION": "Token 0123456789abcdef"})):
    started = time.monotonic()
    r = client.get(path, **headers)
    out[path] = [r.status_code, r.headers.get("retry-after"), round(time.monotonic() - started, 1)]
print(json.dumps(out))
"""


def test_a_database_that_never_answers_is_a_503_within_the_connect_timeout_not_a_hung_request():
    """libpq waits for ever on a connection with no connect_timeout: /readyz and every API request hung,
    each holding a web worker, until /healthz (liveness) went unanswered too and the pods were restarted."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # the kernel completes the handshakes; nobody ever answers
        port = listener.getsockname()[1]
        env = {
            **os.environ,
            "DATABASE_URL": f"postgresql://nobody:secret@127.0.0.1:{port}/nothing",
            "DJANGO_SETTINGS_MODULE": "embedportal.settings",
        }
        env.pop("DB_CONNECT_TIMEOUT", None)  # the default
        hung = "requests to a database that never answers were still waiting after 60 s"
        child = run_snippet(SILENT_DATABASE, env, 60, hung)
    assert child.returncode == 0, child.stderr
    answers = json.loads(child.stdout.strip().splitlines()[-1])
    assert answers["/readyz"][0] == 503
    assert answers["/api/v1/collections/"][:2] == [503, "5"]
    assert all(seconds < 30 for _, _, seconds in answers.values()), answers


# Two /metrics scrapes while the database's address never answers.
SCRAPES_WITHOUT_DATABASE = """
import django
django.setup()
from embedportal import metrics
for _ in range(2):
    body = metrics.exposition()[0].decode()
print("chunks_embedded" in body, "embedding_pipeline_queue_depth" in body)
"""


def test_a_scrape_without_the_database_tries_it_once_and_logs_one_traceback_per_outage():
    """Each of the ten database collectors opened its own connection and logged its own traceback: a
    scrape waited ten connect timeouts (past Prometheus' own, so the process metrics were lost too)
    and wrote some 600 log lines, every 15 s, all through the outage."""
    attempts = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]

        def count() -> None:
            while True:
                try:
                    attempts.append(listener.accept()[0])  # never answered
                except OSError:
                    return

        threading.Thread(target=count, daemon=True).start()
        env = {
            **os.environ,
            "DATABASE_URL": f"postgresql://nobody:secret@127.0.0.1:{port}/nothing",
            "DJANGO_SETTINGS_MODULE": "embedportal.settings",
            "DB_CONNECT_TIMEOUT": "2",
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        try:
            child = subprocess.run(
                [sys.executable, "-c", SCRAPES_WITHOUT_DATABASE],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
        except subprocess.TimeoutExpired:
            pytest.fail("two scrapes without the database took over 2 minutes")
    assert child.returncode == 0, child.stderr
    # The process metrics are served; the database's gauges are absent (absent() alerts cover that).
    assert child.stdout.split() == ["True", "False"]
    assert len(attempts) == 2, "one connection attempt per scrape"
    records = [line for line in child.stderr.splitlines() if line.startswith("20")]  # a log record's first line
    assert [" ERROR " in r for r in records] == [True, False], child.stderr
    assert "still unavailable (scrape 2)" in records[1]
    assert "Traceback" not in child.stderr.split(records[1])[1], "the traceback is logged once"


def test_errors_outside_drf_views_on_api_paths_get_the_json_body_not_the_html_page():
    request = RequestFactory().get("/api/v1/anything/")
    try:
        raise OperationalError("connection refused")
    except OperationalError:
        response = server_error(request)
    assert (response.status_code, response["Content-Type"]) == (503, "application/json")
    try:
        raise ValueError("a bug")
    except ValueError:
        response = server_error(request)
    assert response.status_code == 500
    assert json.loads(response.content)["error"]["status"] == 500
    assert "a bug" not in response.content.decode()


def test_a_deadlock_or_serialization_failure_is_a_409_to_retry_not_the_database_down():
    """PostgreSQL gave up one of two transactions in each other's way: the database answers, and
    "the database is unavailable" (503) sent operators looking for an outage."""
    for cause in (DeadlockDetected("deadlock detected"), SerializationFailure("could not serialize access")):
        try:
            raise OperationalError(str(cause)) from cause
        except OperationalError as exc:
            response = exception_handler(exc, {})
        assert response.status_code == 409
        assert (
            response.data["error"]["message"]
            == "a concurrent request changed the same rows at the same moment; try again"
        )
    try:
        raise OperationalError("connection refused")
    except OperationalError as exc:
        assert exception_handler(exc, {}).status_code == 503


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/v1/no-such-route/", "/api/v1/failures/abc/", "/api/v1/audit/1/"])
def test_an_api_address_no_route_matches_gets_the_json_404_not_the_html_page(admin_client, path):
    # Django's HTML "Not Found" page answered these, against the one error shape of every /api/ path.
    response = admin_client.get(path)
    assert (response.status_code, response["Content-Type"]) == (404, "application/json")
    assert response.json() == {
        "error": {
            "status": 404,
            "message": f"no API route {path!r}; the routes are in /api/v1/schema/ (Swagger UI: /api/v1/docs/)",
            "details": {},
        }
    }
    assert admin_client.get("/no-such-page/")["Content-Type"].startswith("text/html")  # pages keep theirs
    bad_host = admin_client.get("/api/v1/collections/", HTTP_HOST="evil.example")
    assert (bad_host.status_code, bad_host.json()["error"]["status"]) == (400, 400)


@pytest.mark.django_db
def test_an_api_write_without_the_trailing_slash_is_a_json_404_naming_the_route_not_a_redirect(
    admin_client, hash_collection
):
    # A 301 with an HTML body, which clients follow as a GET without the body: 405 "GET not allowed".
    response = admin_client.post("/api/v1/collections/hashes/pause", {}, content_type="application/json")
    assert (response.status_code, response.json()["error"]["message"]) == (
        404,
        "no API route '/api/v1/collections/hashes/pause' (did you mean '/api/v1/collections/hashes/pause/'?); "
        "the routes are in /api/v1/schema/ (Swagger UI: /api/v1/docs/)",
    )
    hash_collection.refresh_from_db()
    assert not hash_collection.paused
    assert admin_client.get("/api/v1/collections")["Location"] == "/api/v1/collections/"  # reads still redirect
    assert admin_client.get("/admin")["Location"] == "/admin/"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/v1/failures/99999/", "no failed document with id 99999"),
        ("/api/v1/embedding-pipeline-operations/benchmarks/99999/", "no benchmark run with id 99999"),
        ("/api/v1/embedding-pipeline-operations/golden-queries/99999/", "no golden query with id 99999"),
        ("/api/v1/embedding-pipeline-operations/test/99999/", "no test run with id 99999"),
    ],
)
def test_a_row_that_does_not_exist_is_named_as_asked_for(admin_client, path, message):
    # DRF's default said "No FailedDocument matches the given query.": a class name, not the id.
    assert admin_client.get(path).json()["error"]["message"] == message


@pytest.mark.django_db
def test_a_drain_task_takes_a_dead_workers_batch_when_its_lease_runs_out(hash_collection):
    import time

    from pipeline import tasks

    enqueue(hash_collection, [IncomingDocument("a", "text a"), IncomingDocument("b", "text b")])
    leased = Document.objects.filter(external_id="a")
    # A live worker renews its leases every 10 s: 25 s left is alive, not waited for.
    leased.update(
        status=DocumentStatus.PROCESSING, lease_owner="w:1:x", lease_expires_at=timezone.now() + timedelta(seconds=25)
    )
    Document.objects.filter(external_id="b").delete()
    drain = EmbeddingIngestionPipeline()
    assert not drain._await_abandoned_lease(deadline=time.monotonic() + 60)
    # Not renewed for 28 s (2 s left): its worker died; the drain waits for it and takes the batch.
    leased.update(lease_expires_at=timezone.now() + timedelta(seconds=2))
    report = tasks.drain_queue(max_seconds=60)
    assert report["embedded"] == 1 and leased.get().status == DocumentStatus.EMBEDDED
