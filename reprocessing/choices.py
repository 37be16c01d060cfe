from __future__ import annotations

from django.db import models


class FailureState(models.TextChoices):
    """Where a failed document is in the ReprocessingWorkflow."""

    WAITING = "waiting", "Waiting for its next retry"
    RETRYING = "retrying", "Requeued, being reprocessed"
    DEAD_LETTERED = "dead_lettered", "Dead-lettered for an operator"
    RESOLVED = "resolved", "Resolved"


class Resolution(models.TextChoices):
    REPROCESSED = "reprocessed", "Embedded by a later pipeline run"
    OPERATOR = "operator", "Closed by an operator"


class ReprocessReason(models.TextChoices):
    """`pipeline_reprocessing_total{reason}` is an ErrorType value or this one."""

    STALE = "stale", "Source changed after its last embedding, past the freshness SLA"
