"""Waking the workers once work is committed; below the models (it imports nothing of the pipeline)."""

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
        # Waiting: not yet taken (a killed cluster's taken rows stay locked until Q_RETRY: not waiting).
        waiting = OrmQ.objects.filter(lock__lte=timezone.now()).count()
        for _ in range(max(0, settings.Q_CLUSTER["workers"] - waiting)):
            async_task(DRAIN_TASK, group="pipeline")
    except Exception:  # noqa: BLE001 -- producers must not fail because the broker is unavailable
        logger.exception("could not enqueue drain tasks; the schedule will pick the work up")


def wake_workers(changed: int, using: str) -> int:
    """Start drain tasks once a transition that changed `changed` rows commits; returns `changed`."""
    if changed:
        transaction.on_commit(kick_workers, using=using)
    return changed
