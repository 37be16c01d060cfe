"""django-q2 entry points. Tasks carry no payloads: the queue is the document table."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from pipeline import history, timings
from pipeline.choices import WorkerRole
from pipeline.models import WorkerHeartbeat
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.wakeup import DRAIN_TASK

HEARTBEAT_TASK = "pipeline.tasks.heartbeat"
# A drain task stops after this long so django-q2's timeout never kills it mid-batch;
# the next kick or the every-minute schedule starts another.
DRAIN_SECONDS = 50.0


def drain_queue(max_seconds: float = DRAIN_SECONDS) -> dict:
    """Process documents until the queue is empty or `max_seconds` have passed."""
    report = EmbeddingIngestionPipeline(role=WorkerRole.DRAIN_TASK).drain(max_seconds=max_seconds)
    return report.as_dict()


def heartbeat() -> None:
    """Every minute: proves the django-q2 cluster runs tasks even when the queue is empty."""
    WorkerHeartbeat.objects.beat(WorkerRole.SCHEDULE)
    history.sample_queue_depth()
    # Rows of processes gone for a day only clutter the overview.
    WorkerHeartbeat.objects.filter(beat_at__lt=timezone.now() - timedelta(days=1)).delete()


def roll_up_history() -> dict:
    """Every hour: minutes older than EMBEDPORTAL_HISTORY_MINUTE_DAYS become hours, rows older than
    EMBEDPORTAL_HISTORY_RETENTION_DAYS are deleted (pipeline.history); so are batch timings older
    than EMBEDPORTAL_BATCH_TIMING_RETENTION_DAYS (pipeline.timings)."""
    done = history.roll_up()
    return {"hours_written": done.hours_written, "pruned": done.pruned, "timings_pruned": timings.prune()}


# (name, task, every N minutes). The drain is the safety net for work no kick announced (a dead
# worker's lease expiring); the heartbeat keeps the queue health check green on an idle cluster
# (and samples the queue depth into the history); the roll-up keeps the history bounded; the
# optimizer's evaluation keeps or reverts the changes it applied.
SCHEDULES = (
    ("pipeline-drain", DRAIN_TASK, 1),
    ("pipeline-heartbeat", HEARTBEAT_TASK, 1),
    ("pipeline-history-rollup", "pipeline.tasks.roll_up_history", 60),
    ("pipeline-optimizer-evaluate", "pipeline.performance.tasks.evaluate_optimizations", 5),
)


def register_schedules(schedules: Iterable[tuple[str, str, int]], using: str = DEFAULT_DB_ALIAS) -> bool:
    """Create or update every-N-minutes django-q2 schedules, keyed by name (idempotent).

    Apps call it from post_migrate, which every deployment passes (the Kubernetes migrate Job,
    `make run`). post_migrate also fires when django_q's tables do not exist yet (`migrate
    pipeline` on a new database); then this does nothing and returns False, and the migrate
    that creates them registers the schedules.
    """
    from django_q.models import Schedule

    if Schedule._meta.db_table not in connections[using].introspection.table_names():
        return False
    for name, func, minutes in schedules:
        Schedule.objects.using(using).update_or_create(
            name=name,
            defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1},
        )
    return True


def ensure_schedules(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Register the pipeline's schedules (PipelineConfig.ready connects this to post_migrate)."""
    return register_schedules(SCHEDULES, using)
