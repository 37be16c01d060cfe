"""failed_documents: one unresolved row per failing document, driven by the ReprocessingWorkflow."""

from __future__ import annotations

from datetime import datetime

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from pipeline.choices import ErrorType, Stage
from pipeline.models import Document
from reprocessing.choices import FailureState, Resolution

# Open and waiting for its due time (a requeued row has none: its document is in the pipeline).
SCHEDULED = Q(state=FailureState.OPEN, next_retry_at__isnull=False)
# What the workflow (when due) or an operator may send back to the queue.
RETRYABLE = SCHEDULED | Q(state=FailureState.DEAD_LETTERED)


class FailedDocumentQuerySet(models.QuerySet["FailedDocument"]):
    """State transitions are compare-and-swap UPDATEs: the loser of a race gets 0 rows."""

    def unresolved(self) -> FailedDocumentQuerySet:
        return self.exclude(state=FailureState.RESOLVED)

    def due(self, now: datetime) -> FailedDocumentQuerySet:
        return self.filter(SCHEDULED, next_retry_at__lte=now)

    def start_retry(self, now: datetime) -> int:
        """Scheduled or dead-lettered -> open without a due time (the caller requeues the documents)."""
        return self.filter(RETRYABLE).update(state=FailureState.OPEN, next_retry_at=None, retried_at=now)

    def dead_letter(self) -> int:
        """Scheduled -> dead_lettered: stop automatic retries and leave it to an operator."""
        return self.filter(SCHEDULED).update(state=FailureState.DEAD_LETTERED, next_retry_at=None)

    def resolve(self, resolution: str, now: datetime) -> int:
        """Any unresolved row -> resolved, recording how."""
        return self.unresolved().update(
            state=FailureState.RESOLVED, resolution=resolution, resolved_at=now, next_retry_at=None
        )


class FailedDocument(models.Model):
    """A document the pipeline failed for good and its retry schedule (reprocessing.failures); resolved
    rows stay as history, so a document can have many rows but only one unresolved."""

    # CASCADE here is Django's (ORM deletes of a document); Collection.delete() removes documents
    # with a raw DELETE, which only the database's ON DELETE CASCADE covers: Django 5.2 cannot
    # declare it, so migrations/0001_squashed_0002_document_fk_on_delete_cascade.py adds it by hand.
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="failures")
    error_type = models.CharField(max_length=24, choices=ErrorType.choices)
    stage = models.CharField(max_length=12, choices=Stage.choices)
    message = models.TextField(blank=True, help_text="The last error, secrets scrubbed.")
    attempts = models.PositiveIntegerField(default=1, help_text="Pipeline failures recorded while this row was open.")
    first_failed_at = models.DateTimeField()
    last_failed_at = models.DateTimeField()
    next_retry_at = models.DateTimeField(null=True, blank=True)
    retried_at = models.DateTimeField(null=True, blank=True, help_text="When it was last requeued.")
    state = models.CharField(max_length=16, choices=FailureState.choices, default=FailureState.OPEN)
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
            # The arbiter of record_failure's insert: two workers cannot open two rows.
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
                condition=Q(state=FailureState.OPEN) | Q(next_retry_at__isnull=True),
                name="reprocessing_faileddocument_retry_only_open",
            ),
        ]
        indexes = [
            # Index names are capped at 30 characters, hence "failed" for the model.
            # FailedDocumentQuerySet.due: the ReprocessingWorkflow's scan for due retries.
            models.Index(fields=["next_retry_at"], name="reprocessing_failed_due", condition=Q(state="open")),
            # Unresolved failures by type and age: the metrics collector, bulk retry by type, admin/API filters.
            models.Index(
                fields=["error_type", "first_failed_at"],
                name="reprocessing_failed_open",
                condition=~Q(state="resolved"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}: {self.error_type} ({self.state})"


class PassTotals(models.Model):
    """What the passes counted (they run in one-shot pods no Prometheus scrapes), exported by
    reprocessing.collectors. One row per key, only incremented: `requeued:<reason>` counts documents;
    `pass:<kind>` passes, their seconds, and per PASS_BUCKETS edge (then +Inf) the passes up to it."""

    key = models.CharField(max_length=100, primary_key=True)
    count = models.BigIntegerField(default=0)
    seconds = models.FloatField(default=0.0)
    buckets = ArrayField(models.BigIntegerField(), default=list)

    def __str__(self) -> str:
        return f"{self.key}: {self.count}"
