"""Recording failures and retrying them: one code path for the pipeline, the
ReprocessingWorkflow, the admin and the API."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from pipeline.embedding import PipelineError
from pipeline.models import Collection, Document
from reprocessing import metrics
from reprocessing.choices import FailureState, Resolution
from reprocessing.models import RETRYABLE, FailedDocument, FailedDocumentQuerySet

# Waits after the 1st, 2nd, 3rd and 4th failure; the 5th failure (the 24 h retry failing) dead-letters.
BACKOFF = (timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2), timedelta(hours=24))


def _unresolved_for_update(document_id: int) -> FailedDocumentQuerySet:
    return FailedDocument.objects.unresolved().select_for_update().filter(document_id=document_id)


def record_failure(document_id: int, error: PipelineError, message: str, now: datetime | None = None) -> int:
    """Open or update the document's failure row and schedule its next retry (or dead-letter it); returns
    its id. Called in the transaction that marks the document failed; `message` is already scrubbed."""
    now = now or timezone.now()
    with transaction.atomic():
        failure = _unresolved_for_update(document_id).first()
        if failure is None:
            failure = FailedDocument(document_id=document_id, first_failed_at=now, attempts=0)
            try:
                with transaction.atomic():  # a savepoint: losing the race must not abort the caller
                    return _count(failure, error, message, now)
            except IntegrityError:
                # A concurrent worker opened the row first (reprocessing_faileddocument_one_open);
                # the insert waited for its commit, so the row is there to lock and update.
                failure = _unresolved_for_update(document_id).get()
        return _count(failure, error, message, now)


def _count(failure: FailedDocument, error: PipelineError, message: str, now: datetime) -> int:
    """One more failure on a new or locked row: the next backoff step, or the dead letter after the last."""
    failure.error_type, failure.stage, failure.message = str(error.error_type), str(error.stage), message[:2000]
    failure.attempts += 1
    failure.last_failed_at = now
    if failure.attempts > len(BACKOFF):
        failure.state, failure.next_retry_at = FailureState.DEAD_LETTERED, None
    else:
        # The provider's Retry-After is a floor under the backoff step.
        wait = max(BACKOFF[failure.attempts - 1], timedelta(seconds=error.retry_after or 0))
        failure.state, failure.next_retry_at = FailureState.OPEN, now + wait
    failure.save()
    return failure.pk


def resolve_reprocessed(document_ids: Iterable[int], now: datetime) -> int:
    """Resolve the failures of documents the pipeline just embedded (in its storing transaction)."""
    # No ids: Django answers 0 without a query.
    return FailedDocument.objects.filter(document_id__in=list(document_ids)).resolve(Resolution.REPROCESSED, now)


def retry(failures: FailedDocumentQuerySet, now: datetime | None = None) -> Counter[str]:
    """Requeue the documents of the given scheduled or dead-lettered failures; returns counts by error type.
    Rows locked (SKIP LOCKED) or requeued already are left alone: schedule, CronWorkflow and operator may race."""
    now = now or timezone.now()
    with transaction.atomic():
        rows = list(
            FailedDocument.objects.filter(RETRYABLE, pk__in=failures.values("pk"))
            .select_for_update(skip_locked=True)
            .values_list("pk", "document_id", "error_type")
        )
        if not rows:
            return Counter()
        ids, documents, error_types = zip(*rows, strict=True)
        FailedDocument.objects.filter(pk__in=ids).start_retry(now)
        # A document a producer re-enqueued meanwhile is already pending; requeue skips it.
        Document.objects.filter(pk__in=documents).requeue()
        # The operations tests' scratch collections are not user traffic: their retries go uncounted.
        of_users = Document.objects.filter(pk__in=documents, collection__in=Collection.objects.user_collections())
        users = set(of_users.values_list("pk", flat=True))
        for reason, n in Counter(error_type for _, document, error_type in rows if document in users).items():
            metrics.count_requeued(reason, n)
    return Counter(error_types)
