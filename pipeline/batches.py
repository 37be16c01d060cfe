"""One batch of a worker: chunk -> embed (LiteLLM, bad inputs isolated by halving) -> store (pgvector),
each collection group ending in one BatchResult for pipeline.recording."""

from __future__ import annotations

import contextvars
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import numpy as np
import psycopg
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from pipeline import backfill, encoder, providers, ratelimits, recording, signals, storage
from pipeline.choices import CircuitState, ErrorType, Stage
from pipeline.chunking import ChunkText, chunker_for
from pipeline.embedding import (
    BATCH_WIDE,
    OUTAGE,
    PipelineError,
    classify_storage_error,
    embed_texts,
    metered,
    provider_of,
)
from pipeline.failures import FailureHandling, advisory, count_outage
from pipeline.leases import Report, StorageStage
from pipeline.models import Collection, Document, ProviderCircuit
from pipeline.recording import BatchResult

# Lost leases (pipeline.models.Document.lost_leases) after which a version is failed, not processed.
MAX_LOST_LEASES = 3


def concurrency(collection: Collection) -> int:
    """Provider calls at once for one batch: `provider_concurrency` for a remote provider (its time is
    waiting), one for a local model (it already uses every core)."""
    return 1 if provider_of(collection.model) == "local" else max(1, collection.provider_concurrency)


def is_source_change(doc: Document) -> bool:
    """Whether storing `doc` is a freshness event: a source change made searchable. Not without a source
    time, nor for a version already embedded (a re-embed: it stayed searchable). Its lag runs from the
    change, or from the collection's creation for content older than it (a first load of an existing
    corpus, `make run`'s sample pages: judged by their age, every first start paged the freshness burn
    alerts); reprocessing.staleness starts the same clock."""
    changed = doc.source_modified_at
    return changed is not None and (doc.last_embedded_at is None or doc.last_embedded_at < changed)


class BatchProcessing(FailureHandling):
    """Chunk, embed and store one claimed batch (EmbeddingIngestionPipeline mixes this in)."""

    _claim: tuple[float, datetime]
    _storage: StorageStage | None
    _then: Callable[[Callable[[], None]], None]

    def _process(self, collection: Collection, docs: list[Document], report: Report) -> None:
        """One collection's group of a batch into one BatchResult, recorded once stored."""
        result = BatchResult(collection, self.worker_id, len(docs), 0.0, 0.0, collection.batch_size)
        try:
            self._process_group(collection, docs, report, result)
        except DatabaseError:
            recording.record_errors(result, self.metrics)  # the outage's tries, at least
            raise

    def _process_group(self, collection: Collection, docs: list[Document], report: Report, result: BatchResult) -> None:
        if collection.local_encoder and collection.model == providers.LOCAL_MODEL:
            served = encoder.current()
            if collection.local_encoder != encoder.label(served):
                # A re-embed requeues this batch's documents: their store below is refused.
                backfill.change_runtime(collection, served)
        result.claim_seconds, claimed_at = self._claim
        result.queue_wait = sum((claimed_at - doc.enqueued_at).total_seconds() for doc in docs) / len(docs)
        # A version whose workers were lost MAX_LOST_LEASES times while processing it (killed, out of
        # memory) fails before it is chunked again: it would take down every worker that claims it, for
        # ever. Reprocessing retries it later, as any failure.
        for doc in (lost := [d for d in docs if d.lost_leases >= MAX_LOST_LEASES]):
            error = PipelineError(
                ErrorType.UNKNOWN,
                Stage.CHUNKING,
                f"its worker stopped {doc.lost_leases} times while processing it (killed, out of memory or past "
                "the task timeout): failed before it stops another; the worker logs and the document's size say why",
            )
            self._count_error(error, result)
            self._fail(doc, error, result)
        docs = [d for d in docs if d not in lost]
        # A worker's first batch loaded LiteLLM and the local model's weights (30 s with an OpenVINO export)
        # inside its embedding stage: every worker start recorded a latency SLO miss for a healthy model.
        try:
            providers.load(collection.model)
        except Exception:  # noqa: BLE001, S110 -- the embedding stage meets it again, and classifies it
            pass
        started = t0 = time.perf_counter()
        chunked = chunker_for(collection).chunk_many([d.text for d in docs], [d.external_id for d in docs])
        result.seconds[Stage.CHUNKING] = time.perf_counter() - t0

        ready: list[tuple[Document, list[ChunkText]]] = []
        for doc, chunks in zip(docs, chunked, strict=True):
            if chunks:
                ready.append((doc, chunks))
            else:
                error = PipelineError(ErrorType.EMPTY_DOCUMENT, Stage.CHUNKING, "no text left to embed after chunking")
                self._count_error(error, result)
                self._fail(doc, error, result)
        result.embedding_documents = len(ready)

        t0 = time.perf_counter()
        with metered() as usage:
            embedded, failed, deferred = self._embed_isolating(collection, ready, result)
        result.seconds[Stage.EMBEDDING] = time.perf_counter() - t0
        result.tokens, result.cost_usd = usage.tokens, usage.cost_usd
        for doc, exc in failed:
            self._fail(doc, exc, result)
        self._defer(collection, deferred, result)
        if not embedded:
            result.total_seconds = time.perf_counter() - started
            self._record(result, report)
            return
        if self._storage is not None:
            self._storage.barrier()  # the previous batch is stored: at most one waits
        self._then(lambda: self._store_batch(result, embedded, started, report))

    def _record(self, result: BatchResult, report: Report) -> None:
        recording.record(result, self.metrics)
        report.add(result)

    def _store_batch(
        self, result: BatchResult, embedded: list[storage.Embedded], started: float, report: Report
    ) -> None:
        """Store a batch's vectors and record its outcome (on the storage thread while draining)."""
        collection = result.collection
        t0 = time.perf_counter()
        embedded_at = timezone.now()
        try:
            stored = self._with_retries(lambda: self._store(collection, embedded, embedded_at), result)
        except PipelineError as exc:
            if exc.error_type != ErrorType.BAD_REQUEST or len(embedded) == 1:
                # A storage error is about the batch's transaction (a lost connection, a full disk): no splitting.
                self._fail_all(embedded, exc, result)
                stored = set()
            else:
                # A row the database refuses (a tsvector over 1 MB) is one document's fault, not the batch's:
                # each is stored alone, and only those refused fail (one failed its whole batch, each retry).
                stored, failed_before = set(), result.failed
                for item in embedded:
                    stored |= self._store_alone(collection, item, embedded_at, result)
                result.seconds[Stage.STORAGE] = time.perf_counter() - t0
                result.superseded = len(embedded) - len(stored) - (result.failed - failed_before)
        else:
            result.seconds[Stage.STORAGE] = time.perf_counter() - t0
            result.superseded = len(embedded) - len(stored)
        result.total_seconds = time.perf_counter() - started
        result.embedded = len(stored)
        result.chunks = sum(len(chunks) for doc, chunks, _ in embedded if doc.pk in stored)
        result.freshness_lags = [
            max(0.0, (embedded_at - max(doc.source_modified_at, collection.created_at)).total_seconds())
            for doc, _, _ in embedded
            if doc.pk in stored and is_source_change(doc)
        ]
        self._record(result, report)

    def _fail_all(self, embedded: list[storage.Embedded], exc: PipelineError, result: BatchResult) -> None:
        try:
            for doc, _, _ in embedded:
                self._fail(doc, exc, result)
        except DatabaseError:
            # Nothing can be written (the leases return the documents to the queue as they run out),
            # but the tries the outage cost are counted.
            recording.record_errors(result, self.metrics)
            raise

    def _store_alone(
        self, collection: Collection, item: storage.Embedded, embedded_at: datetime, result: BatchResult
    ) -> set[int]:
        try:
            return self._with_retries(lambda: self._store(collection, [item], embedded_at), result)
        except PipelineError as exc:
            self._fail(item[0], exc, result)
            return set()

    def _embed_isolating(
        self, collection: Collection, group: list[tuple[Document, list[ChunkText]]], result: BatchResult
    ) -> tuple[list[storage.Embedded], list[tuple[Document, PipelineError]], list[tuple[Document, PipelineError]]]:
        """(embedded, failed, deferred). A group failing for one input is halved down to one document;
        batch-wide errors are not: an outage defers the group, auth fails it. A group deferred
        EMBEDPORTAL_MAX_DEFERRALS times with the circuit closed is halved after all, but for a 429."""
        if not group:
            return [], [], []
        try:
            vectors = self._embed(collection, [c for _, chunks in group for c in chunks], result)
        except PipelineError as exc:
            # `attempts` counts claims: a document claimed n times was deferred n - 1 times.
            too_often = max(doc.attempts for doc, _ in group) > settings.EMBEDPORTAL_MAX_DEFERRALS
            # A 429 is the account's quota, never an input: halving found no bad input, and failed the
            # documents of a provider throttling some calls (its answers to others keep the circuit closed).
            throttled = exc.error_type == ErrorType.RATE_LIMIT
            if exc.error_type in OUTAGE and (exc.circuit_open or not too_often or throttled):
                return [], [], [(doc, exc) for doc, _ in group]
            if len(group) == 1 or (exc.error_type in BATCH_WIDE and exc.error_type not in OUTAGE):
                return [], [(doc, exc) for doc, _ in group], []
            middle = len(group) // 2
            ok_left, failed_left, deferred_left = self._embed_isolating(collection, group[:middle], result)
            ok_right, failed_right, deferred_right = self._embed_isolating(collection, group[middle:], result)
            return ok_left + ok_right, failed_left + failed_right, deferred_left + deferred_right
        parts = np.split(vectors, np.cumsum([len(chunks) for _, chunks in group])[:-1])
        return [(doc, chunks, part) for (doc, chunks), part in zip(group, parts, strict=True)], [], []

    def _embed(self, collection: Collection, chunks: list[ChunkText], result: BatchResult) -> np.ndarray:
        """Embed all chunks in calls of the collection's batch size, shortest first (a local model pads
        each call to its longest text), the vectors put back in the chunks' order."""
        texts = [c.embedded for c in chunks]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        texts = [texts[i] for i in order]
        calls = [
            functools.partial(self._with_retries, functools.partial(self._call_provider, collection, batch), result)
            for batch in ratelimits.calls(texts, collection.batch_size, collection.tokens_per_minute)
        ]
        parts = self._run_calls(calls, concurrency(collection))
        if not parts:
            return np.empty((0, collection.dimensions), np.float32)
        advisory(lambda: ProviderCircuit.objects.record_success(collection), None)
        vectors = np.empty_like(stacked := np.concatenate(parts))
        vectors[order] = stacked
        return vectors

    @staticmethod
    def _run_calls(calls: list[Callable[[], np.ndarray]], limit: int) -> list[np.ndarray]:
        """Run a batch's calls (each with its own retries), `limit` at a time; their vectors in order. The
        first error cancels the calls not started, waits for those in flight and is raised."""
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
        """One embedding call in its rate-limit turn; an outage error counts toward the circuit breaker."""
        tokens = ratelimits.estimate_tokens(texts)
        if collection.tokens_per_minute and tokens > collection.tokens_per_minute:
            # One text alone (calls are cut to the limit): the provider would answer 429 to it for good.
            raise PipelineError(
                ErrorType.BAD_REQUEST,
                Stage.EMBEDDING,
                f"a chunk of about {tokens} tokens is over the collection's tokens_per_minute "
                f"({collection.tokens_per_minute}): no call under that limit can carry it; lower "
                "chunk_size or raise tokens_per_minute",
            )
        ratelimits.wait_for_turn(collection, tokens)
        try:
            return embed_texts(collection, texts)
        except PipelineError as exc:
            if exc.error_type in OUTAGE:
                exc.circuit_open = count_outage(collection, exc.error_type) != CircuitState.CLOSED
            raise

    def _store(self, collection: Collection, results: list[storage.Embedded], embedded_at: datetime) -> set[int]:
        """One storage attempt; `documents_embedded` receivers and the runtime record write in its transaction."""
        try:
            with transaction.atomic():
                stored = storage.store(self.worker_id, results, embedded_at)
                if stored:
                    signals.documents_embedded.send(sender=type(self), document_ids=stored, embedded_at=embedded_at)
                if stored and collection.model == providers.LOCAL_MODEL:
                    runtime = encoder.label(encoder.current())
                    Collection.objects.filter(pk=collection.pk).exclude(local_encoder=runtime).update(
                        local_encoder=runtime
                    )
        except (DatabaseError, psycopg.Error) as exc:  # COPY raises psycopg's errors unwrapped
            if not connection.in_atomic_block:
                # A lost connection is dropped here so the next try reconnects.
                connection.close_if_unusable_or_obsolete()
            raise classify_storage_error(exc) from exc
        return set(stored)
