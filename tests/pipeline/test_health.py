"""Each health check passes on a working pipeline and fails, with its reason, when its dependency breaks."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.utils import timezone
from django_q.models import OrmQ, Schedule, Task

from pipeline import health, signals, tasks
from pipeline.choices import CircuitState, WorkerRole
from pipeline.models import Chunk, Document, ProviderCircuit, WorkerHeartbeat
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from tests.conftest import manage, wait_for


def checks_by_name(body: dict) -> dict[str, dict]:
    return {c["name"]: c for c in body["checks"]}


@pytest.mark.django_db
def test_health_endpoint_passes_when_everything_works(client, admin_client, hash_collection):
    enqueue(hash_collection, [IncomingDocument("d1", "some text")])
    EmbeddingIngestionPipeline().drain()  # embeds and writes this worker's heartbeat

    anonymous = client.get("/api/v1/health/")
    assert anonymous.status_code == 200
    assert anonymous.json() == {
        "healthy": True,
        "checks": [{"name": "model", "ok": True}, {"name": "pgvector", "ok": True}, {"name": "queue", "ok": True}],
    }
    response = admin_client.get("/api/v1/health/")
    assert response.status_code == 200
    body = response.json()
    assert body["healthy"] is True
    checks = checks_by_name(body)
    assert set(checks) == {"model", "pgvector", "queue"}
    assert all(c["ok"] and c["reason"] and c["seconds"] >= 0 for c in checks.values())
    assert checks["model"]["details"]["models"] == ["local/hash-16"]
    assert checks["queue"]["reason"] == "1 worker(s) alive; no pending work"
    assert not Chunk.objects.filter(text=health.PROBE_TEXT).exists()


@pytest.mark.django_db
def test_queue_check_fails_when_no_worker_ever_sent_a_heartbeat(admin_client, hash_collection):
    response = admin_client.get("/api/v1/health/")
    assert response.status_code == 503
    queue = checks_by_name(response.json())["queue"]
    assert queue["ok"] is False
    assert queue["reason"] == "no worker heartbeat in the last 45 s (none on record, nothing embedded yet)"


@pytest.mark.django_db(transaction=True)
def test_queue_check_after_a_killed_workers_row_is_forgotten_says_when_it_last_embedded(hash_collection):
    """A cluster restarting after a kill deletes the dead processes' rows: the check said "none ever" of
    workers that had run for minutes."""
    enqueue(hash_collection, [IncomingDocument("d1", "some text")])
    worker = manage("run_pipeline")
    try:
        wait_for(lambda: Document.objects.filter(last_embedded_at__isnull=False).exists())
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    signals.worker_starting.send(sender=None)  # what a restarted worker or cluster does first
    assert not WorkerHeartbeat.objects.exists()
    result = health.check_queue()
    assert not result.ok
    assert re.fullmatch(
        r"no worker heartbeat in the last 45 s \(none on record; a document was last embedded \d+ s ago\)",
        result.reason,
    )


@pytest.mark.django_db(transaction=True)
def test_a_started_qcluster_counts_its_workers_alive_before_their_first_task(hash_collection, tmp_path):
    """A cluster's workers beat first in their first task: a cluster just started (after a kill, a deploy)
    failed the queue check until a drain or the minute's schedule ran, its scheduler's first pass 30 s on."""
    Schedule.objects.update(next_run=timezone.now() + timedelta(hours=1))  # no task runs at all
    OrmQ.objects.all().delete()
    path = tmp_path / "qcluster.log"
    with path.open("w") as log:
        cluster = manage("qcluster", env={"Q_WORKERS": "2"}, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: len(re.findall(r"ready for work at (\d+)", path.read_text())) == 2, timeout=120)
            pids = re.findall(r"ready for work at (\d+)", path.read_text())
            wait_for(lambda: health.check_queue().ok)
            assert health.check_queue().reason == "2 worker(s) alive; no pending work"
            host = socket.gethostname()
            assert set(WorkerHeartbeat.objects.values_list("worker", flat=True)) == {f"{host}:{pid}" for pid in pids}
            assert not Task.objects.exists()
        finally:
            cluster.send_signal(signal.SIGTERM)
            cluster.wait(timeout=60)
    assert cluster.returncode == 0 and not WorkerHeartbeat.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_queue_check_fails_once_the_only_worker_process_is_killed(hash_collection, settings):
    settings.EMBEDPORTAL_HEARTBEAT_MAX_AGE = 2
    worker = manage("run_pipeline")
    try:
        wait_for(lambda: WorkerHeartbeat.objects.filter(role=WorkerRole.WORKER).exists())
        assert health.check_queue().ok
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    time.sleep(2.5)  # the dead worker's heartbeat ages past the limit

    result = health.check_queue()
    assert not result.ok
    assert result.reason.startswith("no worker heartbeat in the last 2 s (last one ")


@pytest.mark.django_db
def test_queue_check_fails_when_pending_work_waits_and_nothing_is_embedded(hash_collection, settings):
    settings.EMBEDPORTAL_HEALTH_PROGRESS_WINDOW = 600
    WorkerHeartbeat.objects.beat(WorkerRole.WORKER, worker="stuck-host:1")
    enqueue(hash_collection, [IncomingDocument("d1", "text")])
    assert health.check_queue().ok  # just arrived: not yet a problem

    Document.objects.update(available_at=timezone.now() - timedelta(minutes=20))
    result = health.check_queue()
    assert not result.ok
    assert "work has waited 1200 s and nothing was embedded in the last 600 s" == result.reason
    assert result.details["workers_alive"] == 1

    # Work behind its provider's open circuit waits for the provider, not a worker: the model check
    # reports the outage; the queue check failed on it too, for healthy workers.
    circuit = ProviderCircuit.objects.create(
        model=hash_collection.model,
        api_base=hash_collection.api_base,
        endpoint="e",
        state=CircuitState.OPEN,
        updated_at=timezone.now(),
    )
    result = health.check_queue()
    assert result.ok and result.reason == "1 worker(s) alive; 1 pending, none due now"
    circuit.delete()
    assert not health.check_queue().ok

    # Paused collections are waiting on purpose: no alarm for them, and not "no pending work" either.
    hash_collection.__class__.objects.filter(pk=hash_collection.pk).pause()
    result = health.check_queue()
    assert result.ok and result.reason == "1 worker(s) alive; 1 pending, none due now"


@pytest.mark.django_db
def test_model_check_fails_when_the_provider_answers_500(fake_collection, fake_provider):
    assert health.check_model().ok
    fake_provider.mode = "500"
    result = health.check_model()
    assert not result.ok
    assert result.reason.startswith("openai/fake-embedder (collection fake) failed: api_error:")


@pytest.mark.django_db
def test_model_check_fails_on_wrong_dimensions_and_on_timeout(fake_collection, fake_provider):
    fake_provider.mode = "wrong_dims"
    result = health.check_model()
    assert not result.ok and "(collection fake) failed: dimension_mismatch:" in result.reason
    assert "returned vectors of [9] dimensions, collection expects 8" in result.reason
    # An endpoint answering 200 in another shape: a TypeError made /api/v1/health/ a 500 for every tenant.
    fake_provider.mode = "no_data"
    result = health.check_model()
    assert not result.ok and "(collection fake) failed: wrong_count: provider answered without a list" in result.reason

    fake_provider.mode = "ok"
    fake_provider.delay = 3.0
    started = time.monotonic()
    result = health.check_model(timeout=0.5)
    assert not result.ok and "timeout" in result.reason
    assert time.monotonic() - started < 2.5


@pytest.mark.django_db
def test_model_check_skips_paused_collections(fake_collection, fake_provider):
    fake_provider.mode = "500"
    fake_collection.__class__.objects.filter(pk=fake_collection.pk).pause()
    result = health.check_model()
    assert result.ok and result.reason == "no active collections: nothing to embed with"
    assert fake_provider.requests == []


@pytest.mark.django_db
def test_pgvector_check_fails_for_a_role_without_insert_privilege(hash_collection):
    assert health.check_pgvector().ok
    with connection.cursor() as cur:
        # A real privilege loss: the session continues as a role that may read but not write chunks.
        cur.execute("CREATE ROLE embedportal_health_readonly NOLOGIN")
        cur.execute("GRANT SELECT ON pipeline_chunk TO embedportal_health_readonly")
        cur.execute("SET ROLE embedportal_health_readonly")
    try:
        result = health.check_pgvector()
    finally:
        with connection.cursor() as cur:
            cur.execute("RESET ROLE")
    assert not result.ok
    assert result.reason.startswith("cannot write a vector row: InsufficientPrivilege: permission denied")
    assert Chunk.objects.count() == 0


@pytest.mark.django_db
def test_readyz_needs_applied_migrations_and_healthz_needs_no_database(
    client, admin_client, monkeypatch, django_assert_num_queries
):
    with django_assert_num_queries(0):
        assert client.get("/healthz").json() == {
            "name": "live",
            "ok": True,
            "reason": "process is serving requests",
            "seconds": 0.0,
            "details": {},
        }
    monkeypatch.setattr(health, "_migrated", False)
    assert client.get("/readyz").json() == {"name": "ready", "ok": True}  # anonymous: pass or fail only
    ready = admin_client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["reason"].startswith("database reachable, migrations applied")

    monkeypatch.setattr(health, "_migrated", False)
    # The newest one: a deploy that shipped code before running its migration. A squash counts as
    # applied while the migrations it replaces are recorded: they go too.
    loader = MigrationLoader(connection)
    [(_, latest)] = loader.graph.leaf_nodes("pipeline")
    names = [latest, *(name for _, name in loader.disk_migrations["pipeline", latest].replaces)]
    with connection.cursor() as cur:
        cur.execute("DELETE FROM django_migrations WHERE app = 'pipeline' AND name = ANY(%s)", [names])
    assert client.get("/readyz").json() == {"name": "ready", "ok": False}
    not_ready = admin_client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["reason"] == f"1 migration(s) not applied, first pipeline.{latest}"


@pytest.mark.django_db
def test_check_health_command_exits_non_zero_and_says_which_check_failed(hash_collection, capsys):
    with pytest.raises(CommandError, match="unhealthy: queue"):
        call_command("check_health")
    out = capsys.readouterr().out
    assert "PASS model" in out and "PASS pgvector" in out and "FAIL queue" in out

    WorkerHeartbeat.objects.beat(WorkerRole.WORKER)
    call_command("check_health", "--json")
    body = json.loads(capsys.readouterr().out)
    assert body["healthy"] is True and [c["name"] for c in body["checks"]] == ["model", "pgvector", "queue"]


@pytest.mark.django_db
def test_heartbeats_come_from_drain_tasks_and_the_minute_schedule(hash_collection):
    # Registered by migrate (post_migrate), as in every deployment.
    schedule = Schedule.objects.get(name="pipeline-heartbeat")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (tasks.HEARTBEAT_TASK, Schedule.MINUTES, 1)

    WorkerHeartbeat.objects.beat(WorkerRole.WORKER, worker="gone:1")
    WorkerHeartbeat.objects.filter(worker="gone:1").update(beat_at=timezone.now() - timedelta(days=2))
    tasks.heartbeat()
    assert list(WorkerHeartbeat.objects.values_list("role", flat=True)) == [WorkerRole.SCHEDULE]

    tasks.drain_queue()
    # Same process: one row, still the schedule's (judged by the schedule's age, not a worker's).
    assert list(WorkerHeartbeat.objects.values_list("role", flat=True)) == [WorkerRole.SCHEDULE]


@pytest.mark.django_db
def test_a_drain_task_keeps_the_schedule_heartbeat_of_its_process_fresh():
    # django-q2 runs the minute's heartbeat schedule and drain tasks in one process (one row): the
    # drain's beat must not make the row expire after 45 s while the next schedule beat comes at 60 s.
    WorkerHeartbeat.objects.beat(WorkerRole.SCHEDULE, worker="cluster:1")
    WorkerHeartbeat.objects.beat(WorkerRole.DRAIN_TASK, worker="cluster:1")
    WorkerHeartbeat.objects.filter(worker="cluster:1").update(beat_at=timezone.now() - timedelta(seconds=50))
    assert WorkerHeartbeat.objects.fresh(timedelta(seconds=45)).filter(worker="cluster:1").exists()
    # Past the schedule's age the process is gone; then a drain beat is a drain's again.
    WorkerHeartbeat.objects.filter(worker="cluster:1").update(beat_at=timezone.now() - timedelta(seconds=200))
    assert not WorkerHeartbeat.objects.fresh(timedelta(seconds=45)).exists()
    WorkerHeartbeat.objects.beat(WorkerRole.DRAIN_TASK, worker="cluster:1")
    assert WorkerHeartbeat.objects.get(worker="cluster:1").role == WorkerRole.DRAIN_TASK
