"""django-q2 entry points. Tasks carry no payloads: the queue is the document table."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta

from django.utils import timezone

from embedportal.schedules import Every
from pipeline import history
from pipeline.choices import WorkerRole
from pipeline.models import ProviderCircuit, WorkerHeartbeat
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.wakeup import DRAIN_TASK

HEARTBEAT_TASK = "pipeline.tasks.heartbeat"
# A drain task stops after this long so django-q2's timeout never kills it mid-batch;
# the next kick or the every-minute schedule starts another.
DRAIN_SECONDS = 50.0
# Set in every process of a cluster once it is told to stop (embedportal's qcluster command): django-q2
# lets each running and prefetched task finish, so a drain ends after its batch in hand and one that
# starts later claims nothing. Made at import, before the cluster forks, so all its processes share it;
# a lock-free shared byte, as a signal handler sets it (see embedportal.shutdown on locks there).
STOPPING = multiprocessing.get_context("fork").RawValue("b", 0)


def drain_queue(max_seconds: float = DRAIN_SECONDS) -> dict:
    """Process documents until the queue is empty or `max_seconds` have passed."""
    report = EmbeddingIngestionPipeline(role=WorkerRole.DRAIN_TASK).drain(
        max_seconds=max_seconds, stop=lambda: STOPPING.value
    )
    return report.as_dict()


def heartbeat() -> None:
    """Every minute: proves the django-q2 cluster runs tasks even when the queue is empty; samples
    the queue depth, rolls the finished minutes' batch rows up into the history and closes the
    circuits of endpoints no unpaused collection uses."""
    WorkerHeartbeat.objects.beat(WorkerRole.SCHEDULE)
    history.sample_queue_depth()
    history.roll_up_batches()
    # Rows of processes gone for a day only clutter the overview.
    WorkerHeartbeat.objects.filter(beat_at__lt=timezone.now() - timedelta(days=1)).delete()
    ProviderCircuit.objects.close_unused()


def roll_up_history() -> dict:
    """Every hour: minutes older than EMBEDPORTAL_HISTORY_MINUTE_DAYS become hours, rows older than
    EMBEDPORTAL_HISTORY_RETENTION_DAYS are deleted (pipeline.history); so are batch timings older
    than EMBEDPORTAL_BATCH_TIMING_RETENTION_DAYS once rolled up."""
    done = history.roll_up()
    return {"hours_written": done.hours_written, "pruned": done.pruned, "timings_pruned": history.prune_batches()}


# The drain is the safety net for work no kick announced (a dead worker's lease expiring); the
# heartbeat keeps the queue health check green on an idle cluster (and samples the queue depth
# into the history); the roll-up keeps the history bounded; the optimizer's evaluation
# (pipeline.performance) keeps or reverts the changes it applied. No CronWorkflow runs these:
# they stay whatever the scheduler.
SCHEDULES = (
    Every("pipeline-drain", DRAIN_TASK, 1),
    Every("pipeline-heartbeat", HEARTBEAT_TASK, 1),
    Every("pipeline-history-rollup", "pipeline.tasks.roll_up_history", 60),
    Every("pipeline-optimizer-evaluate", "pipeline.performance.tasks.evaluate_optimizations", 5),
    # Golden queries through search once a day: the retrieval quality gauge and SLO read the result.
    Every("pipeline-retrieval-evaluate", "pipeline.quality.evaluate_all", 24 * 60),
)
