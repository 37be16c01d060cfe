"""Waking the workers after a transition that creates work commits. The models call this, so it
imports nothing of the pipeline; the every-minute drain schedule is the safety net."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

DRAIN_TASK = "pipeline.tasks.drain_queue"


def kick_workers() -> None:
    """Start drain tasks for new work, without piling up more than there are workers."""
    from django_q.models import OrmQ
    from django_q.tasks import async_task

    try:
        # Waiting: not yet taken. A taken task's row is locked until Q_RETRY (660 s) from then;
        # after a cluster is killed those rows only look busy and must not stop the kicks.
        waiting = OrmQ.objects.filter(lock__lte=timezone.now()).count()
        for _ in range(max(0, settings.Q_CLUSTER["workers"] - waiting)):
            async_task(DRAIN_TASK, group="pipeline")
    except Exception:  # noqa: BLE001 -- producers must not fail because the broker is unavailable
        logger.exception("could not enqueue drain tasks; the schedule will pick the work up")


def wake_workers(changed: int, using: str) -> int:
    """A transition that creates work changed `changed` rows: start drain tasks once it commits.

    Without this, work created outside `queue.enqueue` (a requeue by `reprocess_failed` or
    `detect_stale`, a resume) waited for the every-minute drain schedule. Returns `changed`.
    """
    if changed:
        transaction.on_commit(kick_workers, using=using)
    return changed
