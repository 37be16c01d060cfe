"""django-q2 entry points of the plumbing."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from embedportal.schedules import Every

SCHEDULES = (Every("task-retention", "embedportal.tasks.prune_failed_tasks", 24 * 60),)


def prune_failed_tasks(now: datetime | None = None) -> dict:
    """Every day: django-q2's failed tasks older than EMBEDPORTAL_FAILED_TASK_RETENTION_DAYS. django-q2
    trims its successful tasks (Q_CLUSTER save_limit) but keeps every failure, traceback and all, for
    good: a schedule failing each minute through an outage adds 1,440 rows a day."""
    from django_q.models import Failure

    cutoff = (now or timezone.now()) - timedelta(days=settings.EMBEDPORTAL_FAILED_TASK_RETENTION_DAYS)
    return {"failed_tasks": Failure.objects.filter(stopped__lt=cutoff).delete()[0]}
