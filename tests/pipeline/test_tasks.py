from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from django_q.models import OrmQ
from django_q.tasks import async_task, result

from pipeline import tasks
from pipeline.choices import DocumentStatus, WorkerRole
from pipeline.models import Document, WorkerHeartbeat
from pipeline.queue import IncomingDocument, enqueue
from tests.conftest import manage


@pytest.mark.django_db(transaction=True)
def test_django_q_worker_drains_the_queue_after_enqueue(hash_collection):
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"text number {i}") for i in range(12)])
    assert OrmQ.objects.exists(), "enqueue kicks a drain task after commit"

    worker = manage("qcluster", "--run-once")
    assert worker.wait(timeout=180) == 0

    assert Document.objects.filter(status=DocumentStatus.EMBEDDED).count() == 12


@pytest.mark.django_db(transaction=True)
def test_qcluster_workers_share_the_litellm_loaded_before_they_were_forked():
    # Our qcluster loads LiteLLM (~165 MB) once in the cluster's process; a worker that imported
    # it itself would hold a private copy. A task reports what its worker inherited.
    task = async_task("tests.pipeline.qtasks.litellm_origin")

    worker = manage("qcluster", "--run-once")
    assert worker.wait(timeout=180) == 0

    origin = result(task)
    assert origin is not None, "the task did not run"
    assert origin["litellm_loaded"], "LiteLLM was not loaded when the task started"
    assert origin["preloaded_by"] is not None and origin["preloaded_by"] != origin["pid"]


@pytest.mark.django_db(transaction=True)
def test_a_drain_wakes_the_workers_when_deferred_work_or_a_probe_falls_due(hash_collection, monkeypatch):
    """A deferred batch or an open circuit's probe fell due between the minute's drains and waited for
    the next one: up to a minute more of every recovery (seen 30 to 60 s under qcluster)."""
    armed: list[tuple[float, object]] = []

    class Timer:
        def __init__(self, delay: float, call) -> None:
            armed.append((delay, call))
            self.daemon = False

        def start(self) -> None:
            pass

    monkeypatch.setattr(tasks.threading, "Timer", Timer)
    monkeypatch.setattr(tasks, "_wake_at", None)
    enqueue(hash_collection, [IncomingDocument("d", "a deferred text")])
    Document.objects.update(available_at=timezone.now() + timedelta(seconds=20))
    OrmQ.objects.all().delete()
    tasks.drain_queue()  # nothing due now: the document waits 20 s
    assert len(armed) == 1 and 19 < armed[0][0] < 21
    tasks.drain_queue()  # a wake no later is set: not a second one
    assert len(armed) == 1

    armed[0][1]()  # the timer fires: drain tasks are queued for the workers
    assert OrmQ.objects.count() == settings.Q_CLUSTER["workers"]
    # Nothing due within the minute: the schedule's drain will do.
    Document.objects.update(available_at=timezone.now() + timedelta(minutes=5))
    monkeypatch.setattr(tasks, "_wake_at", None)
    tasks.drain_queue()
    assert len(armed) == 1


@pytest.mark.django_db(transaction=True)
def test_a_drain_wakes_the_workers_when_a_dead_workers_lease_runs_out(hash_collection, monkeypatch):
    """A cluster restarted soon after a kill found the dead worker's leases with most of their time left: its
    drain ended, and the documents waited for the minute's drain schedule instead of the lease."""
    armed: list[float] = []
    LEASE_LEFT = timedelta(seconds=25)

    class Timer:
        def __init__(self, delay: float, call) -> None:
            armed.append(delay)
            self.daemon = False

        def start(self) -> None:
            pass

    monkeypatch.setattr(tasks.threading, "Timer", Timer)
    monkeypatch.setattr(tasks, "_wake_at", None)
    enqueue(hash_collection, [IncomingDocument("dead", "a dead worker's"), IncomingDocument("live", "a live one's")])
    # A live worker's lease (it renews it) arms nothing: waking for it would poll.
    WorkerHeartbeat.objects.beat(WorkerRole.WORKER, "live-host:1")
    Document.objects.filter(external_id="live").update(
        status=DocumentStatus.PROCESSING, lease_owner="live-host:1:x", lease_expires_at=timezone.now() + LEASE_LEFT
    )
    Document.objects.filter(external_id="dead").update(status=DocumentStatus.EMBEDDED)
    tasks.drain_queue()
    assert armed == []
    # A dead worker's, with more than half of it left (a drain does not wait that long for it): a wake at its end.
    Document.objects.filter(external_id="dead").update(
        status=DocumentStatus.PROCESSING, lease_owner="dead-host:2:y", lease_expires_at=timezone.now() + LEASE_LEFT
    )
    report = tasks.drain_queue()
    assert report["claimed"] == 0
    assert len(armed) == 1 and 24 < armed[0] < 26
