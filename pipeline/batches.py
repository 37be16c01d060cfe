"""One batch of a worker: chunk -> embed (LiteLLM, bad inputs isolated by halving) -> store
(pgvector), and the figures it records (EmbeddingIngestionPipeline mixes this in)."""

from __future__ import annotations

import contextvars
import copy
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from pipeline import circuits, history, signals, storage, timings
from pipeline.choices import CircuitState, ErrorType, Stage
from pipeline.chunking import Chunker, ChunkText, chunker_for
from pipeline.embedding import (
    BATCH_WIDE,
    OUTAGE,
    PipelineError,
    classify_storage_error,
    embed_texts,
    metered,
    provider_of,
)
from pipeline.failures import FailureHandling, advisory
from pipeline.leases import Report, StorageStage
from pipeline.models import Collection, Document, ProviderCircuit

# (document, its chunks, their vectors), ready to store.
Embedded = tuple[Document, list[ChunkText], np.ndarray]


def concurrency(collection: Collection) -> int:
    """How many provider calls a worker makes at once for one of `collection`'s batches: its
    `provider_concurrency` for a remote provider, whose time is waiting; one for a local model,
    which already computes on every core of the worker's machine."""
    if provider_of(collection.model) == "local":
        return 1
    return max(1, collection.provider_concurrency)


class _Unrecorded:
    """A metrics recorder that records nothing: any metric, any labels, any observation."""

    def __getattr__(self, name: str) -> _Unrecorded:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> _Unrecorded:
        return self


class BatchProcessing(FailureHandling):
    """Chunk, embed and store one claimed batch (EmbeddingIngestionPipeline mixes this in)."""

    _chunkers: dict[tuple, Chunker]
    _claim: tuple[float, datetime]
    _storage: StorageStage | None
    _then: Callable[[Callable[[], None]], None]

    def _recording(self, collection: Collection) -> BatchProcessing:
        """This worker, or for a reserved collection (Collection.is_reserved) a copy of it that
        records no Prometheus metrics: an operations test's injected faults must not move the
        counters the alerts read. The copy shares the storage stage, chunkers and lease state."""
        if not collection.is_reserved:
            return self
        quiet = copy.copy(self)
        quiet.metrics = _Unrecorded()
        return quiet

    def _chunker(self, c: Collection) -> Chunker:
        key = (c.chunking_strategy, c.chunk_unit, c.chunk_size, c.chunk_overlap, c.model)
        if key not in self._chunkers:
            self._chunkers[key] = chunker_for(c)
        return self._chunkers[key]

    def _process(self, collection: Collection, docs: list[Document], report: Report) -> None:
        started = t0 = time.perf_counter()
        chunked = self._chunker(collection).chunk_many([d.text for d in docs])
        chunking_seconds = time.perf_counter() - t0
        report.seconds[Stage.CHUNKING] += chunking_seconds
        self.metrics.observe_stage(Stage.CHUNKING, chunking_seconds, len(docs))

        ready: list[tuple[Document, list[ChunkText]]] = []
        for doc, chunks in zip(docs, chunked, strict=True):
            if chunks:
                ready.append((doc, chunks))
            else:
                error = PipelineError(ErrorType.EMPTY_DOCUMENT, Stage.CHUNKING, "no text left to embed after chunking")
                self._count_error(error, report)
                self._fail(doc, error, report)

        t0 = time.perf_counter()
        with metered() as usage:
            embedded, failed, deferred = self._embed_isolating(collection, ready, report)
        embedding_seconds = time.perf_counter() - t0
        report.seconds[Stage.EMBEDDING] += embedding_seconds
        self.metrics.observe_stage(Stage.EMBEDDING, embedding_seconds, len(ready))
        self.metrics.COST.labels(collection=collection.name).inc(usage.cost_usd)
        for doc, exc in failed:
            self._fail(doc, exc, report)
        self._defer(collection, deferred, report)
        if not embedded:
            return
        if self._storage is not None:
            self._storage.barrier()  # the previous batch is stored: at most one waits
        claim = self._claim
        self._then(
            lambda: self._store_batch(
                collection, docs, embedded, report, claim, started, usage, chunking_seconds, embedding_seconds
            )
        )

    def _store_batch(
        self,
        collection: Collection,
        docs: list[Document],
        embedded: list[Embedded],
        report: Report,
        claim: tuple[float, datetime],
        started: float,
        usage: Any,
        chunking_seconds: float,
        embedding_seconds: float,
    ) -> None:
        """Store a batch's vectors and record its outcome (on the storage thread while draining)."""
        results = [
            storage.Embedded(doc.pk, collection.pk, doc.content_hash, chunks, vectors)
            for doc, chunks, vectors in embedded
        ]
        t0 = time.perf_counter()
        embedded_at = timezone.now()
        try:
            stored = self._with_retries(lambda: self._store(results, embedded_at), report)
        except PipelineError as exc:
            # A storage error is about the batch's transaction, not one document: no splitting.
            for doc, _, _ in embedded:
                self._fail(doc, exc, report)
            return
        storage_seconds = time.perf_counter() - t0
        report.seconds[Stage.STORAGE] += storage_seconds
        self.metrics.observe_stage(Stage.STORAGE, storage_seconds, len(results))
        total_seconds = time.perf_counter() - started
        self.metrics.observe_stage("total", total_seconds, len(stored))
        chunks = sum(len(r.chunks) for r in results if r.document_id in stored)
        report.embedded += len(stored)
        report.chunks += chunks
        self.metrics.CHUNKS.inc(chunks)
        self.metrics.DOCUMENTS.labels(outcome="embedded").inc(len(stored))
        # A document re-enqueued with new text (or whose lease expired) while we worked.
        self.metrics.DOCUMENTS.labels(outcome="superseded").inc(len(results) - len(stored))
        lags = [
            max(0.0, (embedded_at - doc.source_modified_at).total_seconds())
            for doc, _, _ in embedded
            if doc.pk in stored and doc.source_modified_at is not None
        ]
        for lag in lags:
            self.metrics.FRESHNESS_LAG.observe(lag)
        if stored and not collection.is_reserved:
            # The same figures in the database's history (the admin's SLOs without Prometheus): one upsert.
            history.record(collection.pk, embedded=len(stored), latency_seconds=total_seconds, freshness_lags=lags)
            waits = [(claim[1] - doc.enqueued_at).total_seconds() for doc in docs]
            timings.record(
                timings.BatchTimes(
                    collection_id=collection.pk,
                    worker=self.worker_id,
                    documents=len(stored),
                    chunks=chunks,
                    tokens=usage.tokens,
                    cost_usd=usage.cost_usd,
                    claim=claim[0],
                    chunking=chunking_seconds,
                    embedding=embedding_seconds,
                    storage=storage_seconds,
                    total=total_seconds,
                    queue_wait=sum(waits) / len(waits),
                    batch_size=collection.batch_size,
                )
            )

    def _embed_isolating(
        self, collection: Collection, group: list[tuple[Document, list[ChunkText]]], report: Report
    ) -> tuple[list[Embedded], list[tuple[Document, PipelineError]], list[tuple[Document, PipelineError]]]:
        """Embed a group of documents: (embedded, failed, deferred).

        A group failing for one of its inputs (400, wrong dimensions, NaN...) is split in halves
        down to one document, so a bad document fails alone and its neighbours are embedded.
        Batch-wide errors are not split, since every half would fail the same way: an outage
        (5xx, connection, timeout, 429), retried in _with_retries, defers the whole group; auth
        fails it. A group deferred EMBEDPORTAL_MAX_DEFERRALS times while the endpoint's circuit
        stayed closed (its provider answers others) is split after all: one input may be the cause.
        """
        if not group:
            return [], [], []
        try:
            vectors = self._embed(collection, [c for _, chunks in group for c in chunks], report)
        except PipelineError as exc:
            if exc.error_type in OUTAGE and (exc.circuit_open or not self._deferred_too_often(group)):
                return [], [], [(doc, exc) for doc, _ in group]
            if len(group) == 1 or (exc.error_type in BATCH_WIDE and exc.error_type not in OUTAGE):
                return [], [(doc, exc) for doc, _ in group], []
            middle = len(group) // 2
            ok_left, failed_left, deferred_left = self._embed_isolating(collection, group[:middle], report)
            ok_right, failed_right, deferred_right = self._embed_isolating(collection, group[middle:], report)
            return ok_left + ok_right, failed_left + failed_right, deferred_left + deferred_right
        embedded, offset = [], 0
        for doc, chunks in group:
            embedded.append((doc, chunks, vectors[offset : offset + len(chunks)]))
            offset += len(chunks)
        return embedded, [], []

    @staticmethod
    def _deferred_too_often(group: list[tuple[Document, list[ChunkText]]]) -> bool:
        # `attempts` counts claims: a document claimed n times was deferred n - 1 times.
        return max(doc.attempts for doc, _ in group) > settings.EMBEDPORTAL_MAX_DEFERRALS

    def _embed(self, collection: Collection, chunks: list[ChunkText], report: Report) -> np.ndarray:
        """Embed all chunks, batched across documents up to the collection's batch size.

        Calls take the chunks shortest first: a local model pads each call to its longest text, so
        calls of similar lengths waste less (as SentenceTransformer.encode sorts its own input);
        the vectors are put back in the chunks' order."""
        order = sorted(range(len(chunks)), key=lambda i: len(chunks[i].text))
        texts = [chunks[i].text for i in order]
        size = collection.batch_size
        calls = [
            functools.partial(self._with_retries, functools.partial(self._call_provider, collection, batch), report)
            for batch in (texts[i : i + size] for i in range(0, len(texts), size))
        ]
        parts = self._run_calls(calls, concurrency(collection))
        if parts:
            advisory(lambda: ProviderCircuit.objects.record_success(collection), None)
        if not parts:
            return np.empty((0, collection.dimensions), np.float32)
        vectors = np.empty_like(stacked := np.concatenate(parts))
        vectors[order] = stacked
        return vectors

    @staticmethod
    def _run_calls(calls: list[Callable[[], np.ndarray]], limit: int) -> list[np.ndarray]:
        """Run a batch's provider calls, up to `limit` at a time, and return their vectors in order.

        Each call keeps its own retries. The first error cancels the calls not started yet, waits
        for those in flight (no call outlives its batch) and is raised: the batch is then retried,
        split or deferred as a whole (_embed_isolating), as with one call at a time."""
        if limit <= 1 or len(calls) <= 1:
            return [call() for call in calls]

        def run(call: Callable[[], np.ndarray]) -> np.ndarray:
            try:
                return call()
            finally:
                # The circuit bookkeeping of an outage may have opened this thread's own connection.
                connection.close()

        with ThreadPoolExecutor(max_workers=min(limit, len(calls)), thread_name_prefix="embed") as pool:
            # Each call runs in a copy of this context: the stage's usage meter (embedding.metered) counts it.
            futures = [pool.submit(contextvars.copy_context().run, run, call) for call in calls]
            try:
                return [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

    def _call_provider(self, collection: Collection, texts: list[str]) -> np.ndarray:
        """One embedding call; an outage error counts toward the endpoint's circuit breaker."""
        try:
            return embed_texts(collection, texts)
        except PipelineError as exc:
            if exc.error_type in OUTAGE:
                record = functools.partial(
                    ProviderCircuit.objects.record_failure,
                    collection,
                    exc.error_type,
                    settings.EMBEDPORTAL_CIRCUIT_FAILURES,
                    circuits.open_wait(),
                )
                state = advisory(record, CircuitState.CLOSED)
                exc.circuit_open = state != CircuitState.CLOSED
            raise

    def _store(self, results: list[storage.Embedded], embedded_at: datetime) -> set[int]:
        """One storage attempt; receivers of `documents_embedded` (reprocessing closes open
        failures) write in the same transaction."""
        try:
            with transaction.atomic():
                stored = storage.store(self.worker_id, results, embedded_at)
                if stored:
                    signals.documents_embedded.send(sender=type(self), document_ids=stored, embedded_at=embedded_at)
        except (DatabaseError, psycopg.Error) as exc:  # COPY raises psycopg's errors unwrapped
            if not connection.in_atomic_block:
                # A lost connection is dropped here so the next try reconnects.
                connection.close_if_unusable_or_obsolete()
            raise classify_storage_error(exc) from exc
        return set(stored)
