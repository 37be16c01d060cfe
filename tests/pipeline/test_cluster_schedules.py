"""Work is never stranded, tested the way Kubernetes runs it: `migrate` (no bootstrap), a
`qcluster`, and the reprocessing commands the Argo CronWorkflows run."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone
from django_q.models import OrmQ, Schedule, Success

from pipeline import backfill, health, tasks
from pipeline.choices import DocumentStatus, ErrorType, Stage
from pipeline.models import Collection, Document, WorkerHeartbeat
from pipeline.queue import IncomingDocument, enqueue
from reprocessing import tasks as reprocessing_tasks
from reprocessing.choices import FailureState
from reprocessing.models import FailedDocument
from tests.conftest import manage, wait_for

EXPECTED_SCHEDULES = [
    ("pipeline-drain", tasks.DRAIN_TASK, 1),
    ("pipeline-heartbeat", tasks.HEARTBEAT_TASK, 1),
    ("reprocessing-retry", reprocessing_tasks.REPROCESS_TASK, 1),
    ("reprocessing-stale", reprocessing_tasks.STALE_TASK, 5),
]


def schedules() -> list[tuple[str, str, int]]:
    """The pipeline's and reprocessing's schedules (other apps register their own)."""
    names = [name for name, _, _ in EXPECTED_SCHEDULES]
    return sorted(Schedule.objects.filter(name__in=names).values_list("name", "func", "minutes"))


@pytest.mark.django_db(transaction=True)
def test_migrate_registers_every_schedule_once():
    # The test database was created by `migrate` alone (pytest-django), as the migrate Job does.
    assert schedules() == EXPECTED_SCHEDULES
    call_command("migrate", verbosity=0)
    assert schedules() == EXPECTED_SCHEDULES


@pytest.mark.django_db(transaction=True)
def test_migrate_registers_the_schedules_even_when_django_q_is_migrated_after_the_apps():
    # post_migrate fires for pipeline and reprocessing while django_q's tables are gone:
    # registering must wait for them, not crash the migration.
    call_command("migrate", "django_q", "zero", verbosity=0)
    call_command("migrate", verbosity=0)
    assert schedules() == EXPECTED_SCHEDULES


@pytest.mark.django_db
def test_every_transition_that_creates_work_wakes_the_workers_after_commit(
    hash_collection, django_capture_on_commit_callbacks
):
    def drain_tasks_after(transition) -> int:
        OrmQ.objects.all().delete()
        with django_capture_on_commit_callbacks(execute=True):
            transition()
            assert not OrmQ.objects.exists(), "woken before commit: a worker could find nothing"
        return OrmQ.objects.count()

    doc = make_document(hash_collection, "doc", status=DocumentStatus.EMBEDDED)
    documents = Document.objects.filter(pk=doc.pk)
    collections = Collection.objects.filter(pk=hash_collection.pk)
    assert drain_tasks_after(documents.requeue) > 0  # operator requeue, retry pass, stale pass
    documents.update(status=DocumentStatus.FAILED)
    assert drain_tasks_after(lambda: backfill.reembed(collections)) > 0
    documents.update(status=DocumentStatus.PROCESSING, lease_owner="w1")
    assert drain_tasks_after(lambda: documents.release("w1")) > 0  # a stopping worker's leases
    collections.pause()
    assert drain_tasks_after(collections.resume) > 0
    # Nothing changed, nothing to wake for.
    assert drain_tasks_after(documents.requeue) == 0
    assert drain_tasks_after(collections.resume) == 0


def make_document(collection, external_id: str, **fields) -> Document:
    text = f"the text of {external_id}"
    return Document.objects.create(
        collection=collection,
        external_id=external_id,
        text=text,
        content_hash=hashlib.sha256(text.encode()).hexdigest(),
        **fields,
    )


def embedded(doc: Document) -> bool:
    doc.refresh_from_db()
    return doc.status == DocumentStatus.EMBEDDED


def run(*args: str) -> None:
    assert manage(*args, stdout=subprocess.DEVNULL).wait(timeout=60) == 0, f"manage.py {' '.join(args)} failed"


@pytest.mark.django_db(transaction=True)
def test_migrated_cluster_embeds_requeued_work_and_is_healthy_when_idle(hash_collection, client, tmp_path):
    # Until said otherwise no schedule is due: only a transition's own wake-up can start a drain.
    Schedule.objects.update(next_run=timezone.now() + timedelta(hours=1))
    now = timezone.now()
    failed = make_document(hash_collection, "failed", status=DocumentStatus.FAILED, last_error="timeout")
    FailedDocument.objects.create(
        document=failed,
        error_type=ErrorType.TIMEOUT,
        stage=Stage.EMBEDDING,
        first_failed_at=now - timedelta(minutes=10),
        last_failed_at=now - timedelta(minutes=10),
        next_retry_at=now - timedelta(minutes=5),
    )
    stale = make_document(
        hash_collection,
        "stale",
        status=DocumentStatus.EMBEDDED,
        source_modified_at=now - timedelta(hours=2),
        last_embedded_at=now - timedelta(hours=3),
    )
    assert not OrmQ.objects.exists()

    log = (tmp_path / "qcluster.log").open("w")
    cluster = manage("qcluster", env={"Q_WORKERS": "1"}, stdout=log, stderr=subprocess.STDOUT)
    try:
        # What the Argo CronWorkflows run; nothing else enqueues.
        run("reprocess_failed", "--once")
        wait_for(lambda: embedded(failed), timeout=60)
        assert FailedDocument.objects.get().state == FailureState.RESOLVED
        run("detect_stale")
        wait_for(lambda: embedded(stale), timeout=60)

        # A worker died holding this document: no transition announces it, only the drain schedule
        # finds it. django-q2 runs due schedules every 30 s. The drains the kicks above enqueued
        # must be done first, or one of them finds the orphan before any schedule is due.
        wait_for(lambda: not OrmQ.objects.exists(), timeout=60)
        orphan = make_document(
            hash_collection,
            "orphan",
            status=DocumentStatus.PROCESSING,
            lease_owner="gone:1",
            lease_expires_at=timezone.now() - timedelta(minutes=1),
            attempts=1,
        )
        Schedule.objects.filter(name__startswith="pipeline-").update(next_run=timezone.now())
        wait_for(lambda: embedded(orphan), timeout=70)
        # The monitor process saves results after the worker is done: give it the scheduler's beat.
        wait_for(lambda: Success.objects.filter(func=tasks.HEARTBEAT_TASK).exists(), timeout=30)

        # Idle and healthy: nothing pending, and the heartbeat schedule keeps the queue check green.
        call_command("check_health", "--json")
        response = client.get("/api/v1/health/")
        assert response.status_code == 200, json.dumps(response.json(), indent=2)
    finally:
        cluster.send_signal(signal.SIGTERM)
        cluster.wait(timeout=60)
        log.close()


@pytest.mark.django_db
def test_a_killed_clusters_taken_tasks_do_not_stop_the_wake_ups(hash_collection, django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    from pipeline.queue import IncomingDocument, enqueue

    OrmQ.objects.all().delete()
    # Drain tasks a killed cluster had taken: django-q2 keeps them locked for Q_RETRY seconds.
    for _ in range(settings.Q_CLUSTER["workers"]):
        OrmQ.objects.create(key="embedportal", payload="taken", lock=timezone.now() + timedelta(seconds=600))
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(hash_collection, [IncomingDocument("new", "a new document")])
    assert OrmQ.objects.filter(lock__lte=timezone.now()).count() == settings.Q_CLUSTER["workers"]


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return "\nState:\tZ" in status.read()  # a zombie is dead, only not yet reaped
    except FileNotFoundError:
        return True


@pytest.mark.django_db(transaction=True)
def test_a_cluster_whose_worker_is_killed_ends_whole_instead_of_waiting_on_a_locked_queue(tmp_path):
    """A worker killed while it waited for a task kept the task queue's lock (django-q2 issue #23): its
    replacement and the other worker waited on it for good, and the cluster embedded nothing while it
    looked alive. Now the whole cluster ends, for its supervisor (Kubernetes) to start it afresh."""
    path = tmp_path / "qcluster.log"
    with path.open("w") as log:
        cluster = manage("qcluster", env={"Q_WORKERS": "2"}, stdout=log, stderr=subprocess.STDOUT)
        try:
            # Killed as soon as it is ready, so the cluster may still be starting or have just started:
            # the command's exit code must not depend on which (a race once made it exit 0 or 1).
            wait_for(lambda: re.search(r"ready for work at (\d+)", path.read_text()), timeout=120)
            workers = [int(pid) for pid in re.findall(r"ready for work at (\d+)", path.read_text())]
            os.kill(workers[0], signal.SIGKILL)
            assert cluster.wait(timeout=60) == 70  # a supervisor restarting on failure acts on it
        finally:
            if cluster.poll() is None:
                cluster.kill()
    assert "died or timed out: its queues may be left locked" in path.read_text()
    wait_for(lambda: all(gone(pid) for pid in workers), timeout=10)


@pytest.mark.django_db(transaction=True)
def test_a_killed_workers_documents_are_embedded_by_the_restarted_cluster_as_their_leases_run_out(
    fake_collection, fake_provider, tmp_path
):
    """The drill: a worker SIGKILLed mid-batch ends its cluster (exit 70) and its supervisor starts another.
    The documents waited for the minute's drain schedule, which the new cluster's scheduler first runs 30 s
    after its start, and meanwhile the queue check said no worker had beaten, "none ever": the start had
    deleted the dead processes' rows, and the new workers beat first in their first task. Here no schedule
    is due: the restarted cluster must wake itself, count as alive once up, and take the documents."""
    Schedule.objects.update(next_run=timezone.now() + timedelta(hours=1))
    fake_provider.delay = 60  # both workers hang in their embedding calls, holding their leases, until killed
    env = {"Q_WORKERS": "2", "EMBEDPORTAL_CLAIM_BATCH": "3", "FAKE_PROVIDER_KEY": "sk-test-secret-123456"}
    enqueue(fake_collection, [IncomingDocument(f"d{i}", f"document number {i}") for i in range(6)])
    path = tmp_path / "killed.log"
    with path.open("w") as log:
        cluster = manage("qcluster", env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: len(fake_provider.requests) >= 2, timeout=120)
            workers = [int(pid) for pid in re.findall(r"ready for work at (\d+)", path.read_text())]
            os.kill(workers[0], signal.SIGKILL)
            assert cluster.wait(timeout=60) == 70
        finally:
            if cluster.poll() is None:
                cluster.kill()
    wait_for(lambda: all(gone(pid) for pid in workers), timeout=10)
    dead = Document.objects.filter(status=DocumentStatus.PROCESSING)
    owners = set(dead.values_list("lease_owner", flat=True))
    assert dead.count() == 6 and len(owners) == 2
    expires = max(dead.values_list("lease_expires_at", flat=True))

    fake_provider.delay = 0
    path = tmp_path / "restarted.log"
    with path.open("w") as log:
        restarted = manage("qcluster", env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            # Both new workers count as alive as soon as they are up, before any task or schedule, and
            # only they: the start forgot the dead ones.
            wait_for(lambda: len(re.findall(r"ready for work at (\d+)", path.read_text())) == 2, timeout=120)
            host = socket.gethostname()
            new = {f"{host}:{pid}" for pid in re.findall(r"ready for work at (\d+)", path.read_text())}
            wait_for(lambda: set(WorkerHeartbeat.objects.alive().values_list("worker", flat=True)) == new)
            # One snapshot for the check and the count: the new workers may take the documents meanwhile.
            with transaction.atomic():
                connection.cursor().execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                queue = health.check_queue()
                held = Document.objects.filter(status=DocumentStatus.PROCESSING, lease_owner__in=owners).count()
            assert queue.ok and queue.reason.startswith("2 worker(s) alive; ")
            assert queue.details["stranded_documents"] == held
            if held:
                assert queue.reason.endswith(f"; {held} held by expired or dead leases")
            wait_for(lambda: Document.objects.filter(status=DocumentStatus.EMBEDDED).count() == 6, timeout=90)
        finally:
            restarted.send_signal(signal.SIGTERM)
            restarted.wait(timeout=60)
    # Taken once each lease ran out, not from a live worker, and by the restart's own wake-up: the drain
    # schedule never ran.
    assert set(Document.objects.values_list("attempts", "lost_leases")) == {(2, 1)}
    assert min(Document.objects.values_list("last_embedded_at", flat=True)) > expires
    assert Schedule.objects.get(name="pipeline-drain").next_run > timezone.now() + timedelta(minutes=50)
