"""django-q2 entry points for reprocessing. Tasks carry no payloads: the tables are the queue."""

from __future__ import annotations

REPROCESS_TASK = "reprocessing.tasks.reprocess_failed"
STALE_TASK = "reprocessing.tasks.detect_stale"


def reprocess_failed() -> dict:
    """One ReprocessingWorkflow pass: requeue the failed documents whose retry is due."""
    from reprocessing.workflow import ReprocessingWorkflow

    return ReprocessingWorkflow().run_once().as_dict()


def detect_stale() -> dict:
    """Count stale documents and requeue those past their collection's freshness SLA."""
    from reprocessing import staleness

    return staleness.detect_stale().as_dict()


def ensure_schedules() -> None:
    """Register the reprocessing schedules once (idempotent: keyed by name).

    A missed run is not replayed: Q_CLUSTER["catch_up"] is False, and one pass does all
    that is due anyway, so downtime never causes a storm of catch-up runs.
    """
    from django_q.models import Schedule

    for name, func, minutes in (
        ("reprocessing-retry", REPROCESS_TASK, 1),
        ("reprocessing-stale", STALE_TASK, 5),
    ):
        Schedule.objects.update_or_create(
            name=name,
            defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1},
        )
