"""django-q2 entry points. Tasks carry no payloads: the queue is the document table."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from datetime import timedelta
from multiprocessing import util
from typing import Any

from django.db import DatabaseError, connection
from django.db.models import Min
from django.utils import timezone

from embedportal.schedules import Every
from pipeline import history
from pipeline.choices import CircuitState, DocumentStatus, WorkerRole
from pipeline.models import Document, ProviderCircuit, WorkerHeartbeat
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.wakeup import DRAIN_TASK, kick_workers

logger = logging.getLogger(__name__)

HEARTBEAT_TASK = "pipeline.tasks.heartbeat"
# A drain task stops after this long so django-q2's timeout never kills it mid-batch.
DRAIN_SECONDS = 50.0
# Work due later than this is left to the minute's drain schedule.
WAKE_WITHIN_SECONDS = 60.0
_wake_at: float | None = None  # monotonic time of this process's pending wake
# Set once the cluster is told to stop (embedportal's qcluster command): a drain ends after its batch in
# hand. Made at import, before the fork, so every process shares it; lock-free: a signal handler sets it.
STOPPING = multiprocessing.get_context("fork").RawValue("b", 0)


def worker_spawned(**kwargs: Any) -> None:
    """django-q2's post_spawn, in each cluster worker process. It beats at once: a worker beat first in its
    first task, so a cluster just (re)started counted no worker alive, and the queue health check failed,
    until a drain or the minute's schedule ran (the scheduler's first pass is 30 s after the start). Its
    clean exit (the cluster stopping, or the process recycled) deletes its row, as a stopping run_pipeline
    does: a stopped cluster's rows counted as alive workers for up to 150 s (the schedule's row age), so
    the queue health check and embedding_pipeline_workers_alive said workers ran, and
    EmbeddingPipelineNoWorkers waited."""
    try:
        # An idle cluster process beats next when the minute's heartbeat schedule reaches it: judged by the
        # schedule's age, or an idle cluster just started would fail the check between 45 s and that beat.
        WorkerHeartbeat.objects.beat(WorkerRole.SCHEDULE)
    except DatabaseError as exc:
        # Not fatal: a worker process that dies here stops the whole cluster (qcluster's sentinel).
        logger.warning("cluster worker starting without the database: it beats at its first task (%s)", exc)
    finally:
        connection.close()  # the process's first task opens its own
    util.Finalize(None, _remove_heartbeat, exitpriority=10)


def _remove_heartbeat() -> None:
    try:
        WorkerHeartbeat.objects.stop()
    except DatabaseError as exc:
        logger.warning("cluster worker stopping without the database: its heartbeat ages out instead (%s)", exc)
    finally:
        connection.close()


def drain_queue(max_seconds: float = DRAIN_SECONDS) -> dict:
    """Process documents until the queue is empty or `max_seconds` have passed."""
    report = EmbeddingIngestionPipeline(role=WorkerRole.DRAIN_TASK).drain(
        max_seconds=max_seconds, stop=lambda: STOPPING.value
    )
    if not STOPPING.value:
        wake_when_due()
    return report.as_dict()


def wake_when_due() -> None:
    """Deferred documents, circuit probes and a dead worker's leases fall due between the minute's drains,
    and nothing announces them: recovery waited up to a minute more. A timer in this worker process wakes
    the workers when the first falls due (the minute's drain stays the safety net if the process goes
    first). Only a dead worker's leases count: a live one renews its own, and waking for those would poll."""
    global _wake_at
    now = timezone.now()
    alive = list(WorkerHeartbeat.objects.alive().values_list("worker", flat=True))
    firsts = [
        Document.objects.filter(status=DocumentStatus.PENDING, available_at__gt=now).aggregate(at=Min("available_at")),
        ProviderCircuit.objects.in_use()
        .filter(state=CircuitState.OPEN, next_probe_at__gt=now)
        .aggregate(at=Min("next_probe_at")),
        Document.objects.workable()
        .stranded(alive, now)
        .filter(lease_expires_at__gt=now)
        .aggregate(at=Min("lease_expires_at")),
    ]
    due = [first["at"] for first in firsts if first["at"] is not None]
    if not due or (delay := (min(due) - now).total_seconds() + 0.2) > WAKE_WITHIN_SECONDS:
        return
    at = time.monotonic() + delay
    if _wake_at is not None and time.monotonic() < _wake_at <= at + 1:
        return  # a wake at about that time or earlier is set already
    _wake_at = at
    timer = threading.Timer(delay, _wake)
    timer.daemon = True
    timer.start()


def _wake() -> None:
    try:
        kick_workers()
    finally:
        connection.close()  # this timer thread's own


def heartbeat() -> None:
    """Every minute: proves the cluster runs tasks, samples the queue depth, rolls batch rows up into the
    history, closes the circuits of endpoints no unpaused collection uses and forgets those none names."""
    WorkerHeartbeat.objects.beat(WorkerRole.SCHEDULE)
    history.sample_queue_depth()
    history.roll_up_batches()
    # Rows of processes gone for a day only clutter the overview.
    WorkerHeartbeat.objects.filter(beat_at__lt=timezone.now() - timedelta(days=1)).delete()
    ProviderCircuit.objects.close_unused()
    ProviderCircuit.objects.forget_unnamed()


def roll_up_history() -> dict:
    """Every hour: the history's roll-up and pruning (pipeline.history), and rolled-up batch timings'."""
    done = history.roll_up()
    return {"hours_written": done.hours_written, "pruned": done.pruned, "timings_pruned": history.prune_batches()}


# The drain is the safety net for work no kick announced (a dead worker's lease expiring). No
# CronWorkflow runs these: they stay whatever the scheduler.
SCHEDULES = (
    Every("pipeline-drain", DRAIN_TASK, 1),
    Every("pipeline-heartbeat", HEARTBEAT_TASK, 1),
    Every("pipeline-history-rollup", "pipeline.tasks.roll_up_history", 60),
    Every("pipeline-optimizer-evaluate", "pipeline.performance.tasks.evaluate_optimizations", 5),
    # Golden queries through search once a day: the retrieval quality gauge and SLO read the result.
    Every("pipeline-retrieval-evaluate", "pipeline.quality.evaluate_all", 24 * 60),
)
