"""django-q2 entry points for reprocessing. Tasks carry no payloads: the tables are the queue."""

from __future__ import annotations

from embedportal.schedules import Every
from reprocessing import staleness
from reprocessing.workflow import ReprocessingWorkflow

REPROCESS_TASK = "reprocessing.tasks.reprocess_failed"
STALE_TASK = "reprocessing.tasks.detect_stale"


def reprocess_failed() -> dict:
    """One ReprocessingWorkflow pass: requeue the failed documents whose retry is due."""
    return ReprocessingWorkflow().run_once().as_dict()


def detect_stale() -> dict:
    """Count stale documents and requeue those past their collection's freshness SLA."""
    return staleness.detect_stale().as_dict()


# A missed run is not replayed (Q_CLUSTER["catch_up"] is False): one pass does all that is due anyway.
SCHEDULES = (
    Every("reprocessing-retry", REPROCESS_TASK, 1, command=("reprocess_failed",)),
    Every("reprocessing-stale", STALE_TASK, 5, command=("detect_stale",)),
)
