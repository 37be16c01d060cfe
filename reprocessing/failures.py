"""Recording failures and moving them through the workflow: one code path for the pipeline,
the ReprocessingWorkflow, the admin and the API."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from pipeline.choices import DocumentStatus
from pipeline.embedding import PipelineError
from pipeline.models import Document
from reprocessing import metrics
from reprocessing.choices import Resolution
from reprocessing.models import RETRYABLE, FailedDocument, FailedDocumentQuerySet

# Waits after the 1st, 2nd, 3rd and 4th failure; the 5th failure (the 24 h retry failing) dead-letters.
BACKOFF: tuple[timedelta, ...] = (
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=24),
)

# One statement, so concurrent workers failing the same document cannot create two open
# rows: the partial unique index reprocessing_faileddocument_one_open is the arbiter. The
# WHERE clause repeats the index predicate as Django wrote it, which PostgreSQL needs to
# pick the index.
_UPSERT = """
INSERT INTO failed_documents AS f
       (document_id, error_type, stage, message, attempts, first_failed_at, last_failed_at,
        next_retry_at, state, resolution)
VALUES (%(document)s, %(error_type)s, %(stage)s, %(message)s, 1, %(now)s, %(now)s,
        %(now)s + GREATEST((%(backoff)s::interval[])[1], %(floor)s), 'waiting', '')
ON CONFLICT (document_id) WHERE NOT (state = 'resolved') DO UPDATE
   SET error_type = EXCLUDED.error_type,
       stage = EXCLUDED.stage,
       message = EXCLUDED.message,
       attempts = f.attempts + 1,
       last_failed_at = EXCLUDED.last_failed_at,
       state = CASE WHEN f.attempts + 1 > cardinality(%(backoff)s::interval[]) THEN 'dead_lettered'
                    ELSE 'waiting' END,
       next_retry_at = CASE WHEN f.attempts + 1 > cardinality(%(backoff)s::interval[]) THEN NULL
                            ELSE EXCLUDED.last_failed_at
                                 + GREATEST((%(backoff)s::interval[])[f.attempts + 1], %(floor)s) END
RETURNING f.id
"""


def record_failure(document_id: int, error: PipelineError, message: str, now: datetime | None = None) -> int:
    """Open or update the document's failure row and schedule its next retry (or dead-letter it).

    `message` is already scrubbed of secrets. A provider's Retry-After is a floor under the
    backoff step. Returns the row id. Call it in the transaction that marks the document failed.
    """
    now = now or timezone.now()
    with connection.cursor() as cur:
        cur.execute(
            _UPSERT,
            {
                "document": document_id,
                "error_type": str(error.error_type),
                "stage": str(error.stage),
                "message": message[:2000],
                "now": now,
                "backoff": list(BACKOFF),
                "floor": timedelta(seconds=error.retry_after or 0),
            },
        )
        return cur.fetchone()[0]


def resolve_reprocessed(document_ids: Iterable[int], now: datetime | None = None) -> int:
    """Close the open failures of documents the pipeline just embedded."""
    ids = list(document_ids)
    if not ids:
        return 0
    return FailedDocument.objects.filter(document_id__in=ids).resolve(Resolution.REPROCESSED, now or timezone.now())


def reconcile(now: datetime | None = None) -> int:
    """Resolve open failures whose document is embedded after its last failure.

    The pipeline resolves them as it stores; this catches what a crash between the two left.
    """
    return (
        FailedDocument.objects.open()
        .filter(document__status=DocumentStatus.EMBEDDED, document__last_embedded_at__gt=F("last_failed_at"))
        .resolve(Resolution.REPROCESSED, now or timezone.now())
    )


def retry(failures: FailedDocumentQuerySet, now: datetime | None = None) -> Counter[str]:
    """Requeue the documents of the given waiting or dead-lettered failures; returns counts by error type.

    Rows locked by another runner (SKIP LOCKED) or already moved on are left alone, so the
    django-q2 schedule, the Argo CronWorkflow and an operator can run this at the same time.
    """
    now = now or timezone.now()
    with transaction.atomic():
        rows = list(
            FailedDocument.objects.filter(pk__in=failures.values("pk"), state__in=RETRYABLE)
            .select_for_update(skip_locked=True)
            .values_list("pk", "document_id", "error_type")
        )
        if not rows:
            return Counter()
        FailedDocument.objects.filter(pk__in=[r[0] for r in rows]).start_retry(now)
        # A document a producer re-enqueued meanwhile is already pending; requeue skips it.
        Document.objects.filter(pk__in=[r[1] for r in rows]).requeue()
    reasons = Counter(error_type for _, _, error_type in rows)
    for reason, n in reasons.items():
        metrics.REPROCESSED.labels(reason=reason).inc(n)
    return reasons
