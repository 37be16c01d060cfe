"""django-q2 entry points. Tasks carry no payloads: the queue is the document table."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

logger = logging.getLogger(__name__)

DRAIN_TASK = "pipeline.tasks.drain_queue"
HEARTBEAT_TASK = "pipeline.tasks.heartbeat"
# A drain task stops after this long so django-q2's timeout never kills it mid-batch;
# the next kick or the every-minute schedule starts another.
DRAIN_SECONDS = 50.0


def drain_queue(max_seconds: float = DRAIN_SECONDS) -> dict:
    """Process documents until the queue is empty or `max_seconds` have passed."""
    from pipeline.choices import WorkerRole
    from pipeline.pipeline import EmbeddingIngestionPipeline

    report = EmbeddingIngestionPipeline(role=WorkerRole.DRAIN_TASK).drain(max_seconds=max_seconds)
    return report.as_dict()


def heartbeat() -> None:
    """Every minute: proves the django-q2 cluster runs tasks even when the queue is empty."""
    from pipeline.choices import WorkerRole
    from pipeline.models import WorkerHeartbeat

    WorkerHeartbeat.objects.beat(WorkerRole.SCHEDULE)
    # Rows of processes gone for a day only clutter the overview.
    WorkerHeartbeat.objects.filter(beat_at__lt=timezone.now() - timedelta(days=1)).delete()


def kick_workers() -> None:
    """Start drain tasks for new work, without piling up more than there are workers.

    Called after commit by enqueue; the every-minute schedule is the safety net.
    """
    from django_q.models import OrmQ
    from django_q.tasks import async_task

    try:
        waiting = OrmQ.objects.count()
        for _ in range(max(0, settings.Q_CLUSTER["workers"] - waiting)):
            async_task(DRAIN_TASK, group="pipeline")
    except Exception:  # noqa: BLE001 -- producers must not fail because the broker is unavailable
        logger.exception("could not enqueue drain tasks; the schedule will pick the work up")


def ensure_schedules() -> None:
    """Register the periodic tasks once (idempotent: keyed by name)."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name="pipeline-drain",
        defaults={"func": DRAIN_TASK, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1},
    )
    Schedule.objects.update_or_create(
        name="pipeline-heartbeat",
        defaults={"func": HEARTBEAT_TASK, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1},
    )

    from reprocessing.tasks import ensure_schedules as ensure_reprocessing_schedules

    ensure_reprocessing_schedules()
