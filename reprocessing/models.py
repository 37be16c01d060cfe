"""failed_documents: one open row per failing document, driven by the ReprocessingWorkflow."""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.db.models import Q

from pipeline.choices import ErrorType, Stage
from pipeline.models import Document
from reprocessing.choices import FailureState, Resolution

# States an operator (or the workflow, for WAITING) may send back to the queue.
RETRYABLE = (FailureState.WAITING, FailureState.DEAD_LETTERED)


class FailedDocumentQuerySet(models.QuerySet["FailedDocument"]):
    """State transitions are compare-and-swap UPDATEs: the loser of a race gets 0 rows."""

    def open(self) -> FailedDocumentQuerySet:
        return self.exclude(state=FailureState.RESOLVED)

    def due(self, now: datetime) -> FailedDocumentQuerySet:
        return self.filter(state=FailureState.WAITING, next_retry_at__lte=now)

    def start_retry(self, now: datetime) -> int:
        """waiting/dead_lettered -> retrying (the caller requeues the documents in the same transaction)."""
        return self.filter(state__in=RETRYABLE).update(state=FailureState.RETRYING, next_retry_at=None, retried_at=now)

    def dead_letter(self) -> int:
        """waiting -> dead_lettered: stop automatic retries and leave it to an operator."""
        return self.filter(state=FailureState.WAITING).update(state=FailureState.DEAD_LETTERED, next_retry_at=None)

    def resolve(self, resolution: str, now: datetime) -> int:
        """Any open state -> resolved, recording how."""
        return self.open().update(
            state=FailureState.RESOLVED, resolution=resolution, resolved_at=now, next_retry_at=None
        )


class FailedDocument(models.Model):
    """A document the pipeline failed for good, its failure history and its retry schedule.

    Rows are written by `reprocessing.failures.record_failure` (from the pipeline's `_fail`)
    and closed when the document is embedded again or an operator resolves them; resolved
    rows stay as history, so a document can have many rows but only one open.
    """

    # CASCADE here is Django's (ORM deletes of a document); Collection.delete() removes documents
    # with a raw DELETE, which only the database's ON DELETE CASCADE covers: Django 5.2 cannot
    # declare it, so migrations/0002_document_fk_on_delete_cascade.py adds it by hand.
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="failures")
    error_type = models.CharField(max_length=24, choices=ErrorType.choices)
    stage = models.CharField(max_length=12, choices=Stage.choices)
    message = models.TextField(blank=True, help_text="The last error, secrets scrubbed.")
    attempts = models.PositiveIntegerField(default=1, help_text="Pipeline failures recorded while this row was open.")
    first_failed_at = models.DateTimeField()
    last_failed_at = models.DateTimeField()
    next_retry_at = models.DateTimeField(null=True, blank=True)
    retried_at = models.DateTimeField(null=True, blank=True, help_text="When it was last requeued.")
    state = models.CharField(max_length=16, choices=FailureState.choices, default=FailureState.WAITING)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=16, choices=Resolution.choices, blank=True)

    objects = FailedDocumentQuerySet.as_manager()

    class Meta:
        db_table = "failed_documents"
        ordering = ["-last_failed_at", "-id"]
        permissions = [
            ("retry_faileddocument", "Can retry failed documents"),
            ("resolve_faileddocument", "Can resolve or dead-letter failed documents"),
        ]
        constraints = [
            # record_failure's INSERT ... ON CONFLICT uses this as its arbiter.
            models.UniqueConstraint(
                fields=["document"],
                condition=~Q(state=FailureState.RESOLVED),
                name="reprocessing_faileddocument_one_open",
            ),
            models.CheckConstraint(
                condition=Q(state=FailureState.RESOLVED, resolved_at__isnull=False)
                | (~Q(state=FailureState.RESOLVED) & Q(resolved_at__isnull=True)),
                name="reprocessing_faileddocument_resolved_at",
            ),
            models.CheckConstraint(
                condition=~Q(state=FailureState.WAITING) | Q(next_retry_at__isnull=False),
                name="reprocessing_faileddocument_waiting_has_retry",
            ),
        ]
        indexes = [
            # Index names are capped at 30 characters, hence "failed" for the model.
            # Scanned by ReprocessingWorkflow for due retries.
            models.Index(fields=["next_retry_at"], name="reprocessing_failed_due", condition=Q(state="waiting")),
            # Open failures by type and age: the metrics collector, bulk retry by type, admin/API filters.
            models.Index(
                fields=["error_type", "first_failed_at"],
                name="reprocessing_failed_open",
                condition=~Q(state="resolved"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}: {self.error_type} ({self.state})"
