from __future__ import annotations

from django.db import models


class FailureState(models.TextChoices):
    """An open failure is scheduled (`next_retry_at`) or requeued (none: the document's status says where it is)."""

    OPEN = "open", "Open: scheduled for a retry, or requeued"
    DEAD_LETTERED = "dead_lettered", "Dead-lettered for an operator"
    RESOLVED = "resolved", "Resolved"


class Resolution(models.TextChoices):
    REPROCESSED = "reprocessed", "Embedded by a later pipeline run"
    OPERATOR = "operator", "Closed by an operator"


class ReprocessReason(models.TextChoices):
    """`pipeline_reprocessing_total{reason}` is an ErrorType value or this one."""

    STALE = "stale", "Source changed after its last embedding, past the freshness SLA"
