"""A worker's error paths: in-batch retries, failing a document, deferring a batch, circuit bookkeeping."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from pipeline import signals, waits
from pipeline.choices import CircuitState
from pipeline.embedding import PipelineError, api_key, scrub
from pipeline.leases import first_line
from pipeline.models import Collection, Document, ProviderCircuit
from pipeline.recording import BatchResult
from pipeline.waits import RetryPolicy

logger = logging.getLogger(__name__)

T = TypeVar("T")


def count_outage(endpoint: Any, error_type: str) -> str:
    """One more outage error of the endpoint (anything with `model` and `api_base`) toward its circuit
    breaker; the circuit's state after (closed if unrecorded)."""
    failures, wait = settings.EMBEDPORTAL_CIRCUIT_FAILURES, waits.circuit_wait()
    record = functools.partial(ProviderCircuit.objects.record_failure, endpoint, error_type, failures, wait)
    return advisory(record, CircuitState.CLOSED)


def advisory(record: Callable[[], T], default: T) -> T:
    """Run circuit bookkeeping that must not cost a batch its work: with the database away, storage's
    own retries wait for it and the next call records the circuit again."""
    try:
        return record()
    except DatabaseError as exc:
        logger.warning("provider circuit not recorded, database unavailable: %s", first_line(exc))
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()
        return default


_COUNTING = threading.Lock()


class FailureHandling:
    """The worker's error paths (EmbeddingIngestionPipeline mixes this in)."""

    worker_id: str
    retry: RetryPolicy

    def _with_retries(self, attempt: Callable[[], T], result: BatchResult) -> T:
        """Run `attempt`, retrying transient errors with backoff; permanent ones raise at once."""
        tries, n = self.retry.tries, 1
        while True:
            try:
                return attempt()
            except PipelineError as exc:
                self._count_error(exc, result)
                exc.tries = n
                # An open circuit means the provider is down for everyone: no more tries now. A Retry-After
                # longer than a batch may wait would make the next tries fail too: defer for it in full now.
                if not exc.transient or n >= tries or exc.circuit_open or (exc.retry_after or 0) > self.retry.max_wait:
                    raise
                logger.warning("%s (try %d of %d)", exc, n, tries)
                self.retry.sleep(self.retry.delay(exc, n))
                n += 1

    @staticmethod
    def _count_error(exc: PipelineError, result: BatchResult) -> None:
        # Every failed try counts (errors_total is diagnostic); concurrent calls count from their threads.
        with _COUNTING:
            result.errors[exc.error_type] += 1

    def _defer(
        self, collection: Collection, deferred: list[tuple[Document, PipelineError]], result: BatchResult
    ) -> None:
        """Back to the queue after the backoff or Retry-After: a worker must not wait out an outage holding them."""
        if not deferred:
            return
        exc = deferred[0][1]
        until = timezone.now() + timedelta(seconds=self.retry.defer_delay(exc, exc.tries))
        message = scrub(f"deferred: {exc}", api_key(collection))
        n = Document.objects.filter(pk__in=[doc.pk for doc, _ in deferred]).defer_until(self.worker_id, until, message)
        result.deferred += n
        logger.warning(
            "deferred %d document(s) of %s until %s%s: %s",
            n,
            collection.name,
            until.isoformat(timespec="seconds"),
            " (provider circuit open)" if exc.circuit_open else "",
            message,
        )

    def _fail(self, doc: Document, exc: PipelineError, result: BatchResult) -> None:
        """Fail a document; `document_failed` receivers (reprocessing) write in the same transaction."""
        message = scrub(str(exc), api_key(doc.collection))
        with transaction.atomic():
            failed = Document.objects.filter(pk=doc.pk).mark_failed(self.worker_id, message)
            if failed:
                signals.document_failed.send(sender=type(self), document_id=doc.pk, error=exc, message=message)
        result.failed += failed
        # What operators search by: the collection and the producer's id (the row id for the admin's URL).
        logger.warning("document %r of %s (id %s) failed: %s", doc.external_id, doc.collection.name, doc.pk, message)
