"""EmbeddingIngestionPipeline: claim -> chunk -> embed (LiteLLM) -> store (pgvector)."""

from __future__ import annotations

import contextvars
import copy
import functools
import logging
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import numpy as np
import psycopg
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.utils import timezone

from embedportal.shutdown import SignalStop
from pipeline import circuits, history, metrics, signals, storage, timings
from pipeline.backfill import finish_ready
from pipeline.choices import CircuitState, ErrorType, Stage, WorkerRole
from pipeline.chunking import Chunker, ChunkText, chunker_for
from pipeline.embedding import (
    BATCH_WIDE,
    OUTAGE,
    PipelineError,
    api_key,
    classify_storage_error,
    embed_texts,
    metered,
    provider_of,
    scrub,
)
from pipeline.models import Collection, Document, ProviderCircuit, WorkerHeartbeat

logger = logging.getLogger(__name__)

T = TypeVar("T")
# Seconds between a worker's heartbeat writes (EMBEDPORTAL_HEARTBEAT_MAX_AGE must be well above).
HEARTBEAT_EVERY = 15.0
# Milliseconds a lease renewal waits for a row lock before trying again at the next renewal.
RENEW_LOCK_TIMEOUT_MS = 2000
# Documents a half-open probe sends to a failing provider: the least work put at risk.
PROBE_DOCUMENTS = 1
# (document, its chunks, their vectors), ready to store.
Embedded = tuple[Document, list[ChunkText], np.ndarray]


@dataclass(frozen=True)
class RetryPolicy:
    """In-batch retries of transient errors: up to `tries` tries of a batch, waiting
    base * 2^(n-1) seconds (or the provider's Retry-After) between them, never above `max_wait`."""

    tries: int
    base_seconds: float
    max_wait: float
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_settings(cls, **overrides: Any) -> RetryPolicy:
        return cls(
            **{
                "tries": settings.EMBEDPORTAL_BATCH_TRIES,
                "base_seconds": settings.EMBEDPORTAL_RETRY_BASE_SECONDS,
                "max_wait": settings.EMBEDPORTAL_RETRY_MAX_WAIT,
                **overrides,
            }
        )

    def delay(self, error: PipelineError, tries: int) -> float:
        """Seconds before the next try: the provider's Retry-After if it sent one, else exponential; capped."""
        wanted = error.retry_after if error.retry_after is not None else self.base_seconds * 2 ** (tries - 1)
        return max(0.0, min(wanted, self.max_wait))

    def defer_delay(self, error: PipelineError, tries: int) -> float:
        """Seconds a batch deferred after `tries` failed tries stays out of the queue: the
        provider's Retry-After in full (a deferred batch holds no worker), else the next backoff step."""
        if error.retry_after is not None:
            return max(0.0, error.retry_after)
        return max(0.0, min(self.base_seconds * 2**tries, self.max_wait))


def log_database_error(what: str, exc: BaseException, failures: int) -> None:
    """The first failure of a run with its traceback, then one line per retry with the count: an
    outage must not fill the log with a traceback every few seconds."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if failures == 1:
        logger.error("%s: %s", what, message, exc_info=exc)
    else:
        logger.warning("%s: still failing (retry %d): %s", what, failures - 1, message)


def _advisory(record: Callable[[], T], default: T) -> T:
    """Run circuit-breaker bookkeeping that must not cost a batch its work.

    The embeddings in hand are worth more than one circuit row: when the database is away
    between the provider call and storage, storage's own retries wait for it (and reconnect),
    and the next call records the circuit again.
    """
    try:
        return record()
    except DatabaseError as exc:
        logger.warning("provider circuit not recorded, database unavailable: %s", str(exc).strip().splitlines()[:1])
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()
        return default


def concurrency(collection: Collection) -> int:
    """How many provider calls a worker makes at once for one of `collection`'s batches: its
    `provider_concurrency` for a remote provider, whose time is waiting; one for a local model,
    which already computes on every core of the worker's machine."""
    if provider_of(collection.model) == "local":
        return 1
    return max(1, collection.provider_concurrency)


_COUNTING = threading.Lock()


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Report:
    claimed: int = 0
    embedded: int = 0
    failed: int = 0
    deferred: int = 0
    chunks: int = 0
    batches: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, other: Report) -> None:
        for name in ("claimed", "embedded", "failed", "deferred", "chunks", "batches"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for stage, seconds in other.seconds.items():
            self.seconds[stage] += seconds
        for kind, n in other.errors.items():
            self.errors[kind] += n

    def as_dict(self) -> dict:
        return {
            "claimed": self.claimed,
            "embedded": self.embedded,
            "failed": self.failed,
            "deferred": self.deferred,
            "chunks": self.chunks,
            "batches": self.batches,
            "seconds": {str(k): round(v, 4) for k, v in self.seconds.items()},
            "errors": {str(k): v for k, v in self.errors.items()},
        }


class LeaseKeeper:
    """Renews a batch's leases, and its process's heartbeat, every third of the lease while the
    batch is still running.

    Without it a batch that outlives its lease (a slow provider, retries with backoff) would
    be claimed and embedded a second time by another worker, and a busy worker would look
    dead. A worker that dies stops renewing, so its lease still expires: leases can be short.
    A database blip is retried at the next renewal rather than ending the renewals.
    """

    def __init__(self, worker: str, ids: list[int], lease: timedelta, role: str = WorkerRole.WORKER) -> None:
        self.worker, self.ids, self.lease, self.role = worker, ids, lease, role
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"lease-{worker}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()

    def _run(self) -> None:
        failures = 0
        try:
            while not self.done.wait(self.lease.total_seconds() / 3):
                try:
                    with transaction.atomic(), connection.cursor() as cur:
                        # Never block on a row lock for long: the next renewal comes soon, and
                        # __exit__ must not wait on a stuck statement.
                        cur.execute("SELECT set_config('lock_timeout', %s, true)", [str(RENEW_LOCK_TIMEOUT_MS)])
                        Document.objects.filter(pk__in=self.ids).renew(self.worker, self.lease)
                        WorkerHeartbeat.objects.beat(self.role)
                    failures = 0
                except DatabaseError as exc:
                    failures += 1
                    log_database_error(f"could not renew leases of worker {self.worker}", exc, failures)
                    connection.close_if_unusable_or_obsolete()
        finally:
            close_old_connections()
            connection.close()  # this thread's own connection


class StorageStage:
    """A thread that stores one batch while the worker chunks and embeds the next (a pipeline of
    depth 1): with a remote provider a worker's rate approaches the slower of provider and
    database instead of their sum. Jobs run in submission order on one thread with its own
    database connection, so each batch still commits in its own transaction; `barrier()`
    before a batch's storage keeps at most one batch waiting to be stored. A job's error is
    raised by the next barrier() or close(), in the worker's thread."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="storage")
        self.pending: list[Future] = []

    def submit(self, job: Callable[[], None]) -> None:
        self.pending.append(self.executor.submit(job))

    def barrier(self) -> None:
        pending, self.pending = self.pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        try:
            self.barrier()
        finally:
            self.executor.submit(lambda: connection.close()).result()  # the storage thread's own connection
            self.executor.shutdown()


class _Unrecorded:
    """A metrics recorder that records nothing: any metric, any labels, any observation."""

    def __getattr__(self, name: str) -> _Unrecorded:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> _Unrecorded:
        return self


class EmbeddingIngestionPipeline:
    """One worker's view of the pipeline. Many may run at once, in any process or host."""

    def __init__(
        self,
        worker_id: str | None = None,
        claim_batch: int | None = None,
        lease_seconds: int | None = None,
        role: str = WorkerRole.WORKER,
        retry: RetryPolicy | None = None,
        recorder: Any = metrics,
    ) -> None:
        """`recorder` is what the pipeline records its Prometheus metrics through: the
        pipeline.metrics module, or a stand-in that records nothing (benchmark_metrics)."""
        self.worker_id = worker_id or new_worker_id()
        self.claim_batch = claim_batch or settings.EMBEDPORTAL_CLAIM_BATCH
        self.lease = timedelta(seconds=lease_seconds or settings.EMBEDPORTAL_LEASE_SECONDS)
        self.role = role
        self.retry = retry or RetryPolicy.from_settings()
        self.metrics = recorder
        self._chunkers: dict[tuple, Chunker] = {}
        self._last_beat = -HEARTBEAT_EVERY
        # The current batch's claim: (seconds the claim took, when it was claimed), for BatchTiming.
        self._claim: tuple[float, datetime] = (0.0, timezone.now())
        # While drain() runs (EMBEDPORTAL_STORAGE_OVERLAP): batches are stored on this thread.
        self._storage: StorageStage | None = None

    # -- loop ---------------------------------------------------------------------------

    def run_once(self) -> Report:
        """Claim one batch and process it. A report with claimed == 0 means the queue is empty.

        A provider circuit due for its half-open probe is served first, with one small batch of
        its collections; otherwise the claim takes the next collection with work, round-robin,
        skipping those whose provider's circuit is open.
        """
        report = Report()
        self._heartbeat()
        t0 = time.perf_counter()
        probe = ProviderCircuit.objects.take_probe(self.worker_id, self.lease)
        docs = []
        if probe is not None:
            docs = Document.objects.claim(self.worker_id, PROBE_DOCUMENTS, self.lease, endpoint=probe)
            if not docs:
                ProviderCircuit.objects.postpone(self.worker_id, circuits.open_wait(probe.reopenings))
                probe = None
        if probe is None:
            docs = Document.objects.claim(self.worker_id, self.claim_batch, self.lease)
        self._claim = (time.perf_counter() - t0, timezone.now())
        self.metrics.observe_claim(self._claim[0], [(self._claim[1] - d.enqueued_at).total_seconds() for d in docs])
        report.claimed = len(docs)
        if not docs:
            finish_ready()  # a backfill whose index build died with its worker (pipeline.backfill)
            return report
        by_collection: dict[int, list[Document]] = defaultdict(list)
        for doc in docs:
            by_collection[doc.collection_id].append(doc)
        keeper = LeaseKeeper(self.worker_id, [d.pk for d in docs], self.lease, self.role).__enter__()
        try:
            for group in by_collection.values():
                self._recording(group[0].collection)._process(group[0].collection, group, report)
        finally:
            # The leases are kept until the batch is stored, which may be after this returns.
            self._then(lambda: keeper.__exit__(None, None, None))
        report.batches = 1
        if probe is not None:
            self._end_probe(probe, report)
        return report

    def _end_probe(self, probe: ProviderCircuit, report: Report) -> None:
        """An answer from the provider closes its circuit; another outage error opens it again, for longer."""
        if report.deferred:
            wait = circuits.open_wait(probe.reopenings + 1)
            ProviderCircuit.objects.reopen(self.worker_id, wait)
            logger.warning(
                "provider %s still failing: circuit open again, next probe in %.0f s",
                probe.endpoint,
                wait.total_seconds(),
            )
        else:
            ProviderCircuit.objects.close(self.worker_id)
            logger.warning("provider %s answers again: circuit closed", probe.endpoint)

    def drain(self, max_seconds: float | None = None, stop: Callable[[], bool] | None = None) -> Report:
        """Process batches until the queue is empty, time is up, or `stop()` says so. Each batch
        is stored while the next one is embedded (StorageStage); all are stored on return."""
        reports = []
        deadline = time.monotonic() + max_seconds if max_seconds else None
        # Inside a caller's transaction the storage thread's own connection could not see the claimed
        # rows, and the caller expects our writes in its transaction: store inline then.
        overlap = settings.EMBEDPORTAL_STORAGE_OVERLAP and not connection.in_atomic_block
        self._storage = StorageStage() if overlap else None
        try:
            while not (stop and stop()) and not (deadline and time.monotonic() > deadline):
                try:
                    report = self.run_once()
                except DatabaseError:
                    if self._storage is None or not self._storage.pending:
                        raise
                    # The database went away while the previous batch is being stored: that batch's
                    # storage retries ride out a short outage (as inline storage did); then claim again.
                    self._storage.barrier()
                    report = self.run_once()
                reports.append(report)
                if report.claimed == 0:
                    break
        finally:
            stage, self._storage = self._storage, None
            if stage is not None:
                stage.close()
        total = Report()
        for report in reports:  # complete only now: the storage thread adds to them
            total.add(report)
        return total

    def _then(self, job: Callable[[], None]) -> None:
        """Run `job` after the current batch's storage: now, or queued behind it on the storage thread."""
        if self._storage is None:
            job()
        else:
            self._storage.submit(job)

    def run_forever(self, stop: SignalStop | threading.Event) -> Report:
        total = Report()
        failures = 0
        while not stop.is_set():
            try:
                if failures:
                    # Back from a database error: the batch it cut short is given back now, not
                    # when its leases expire (this worker still owns them; nobody else can).
                    released = Document.objects.release(self.worker_id)
                    logger.warning(
                        "database reachable again after %d retr%s; worker %s gave back %d document(s)",
                        failures - 1,
                        "y" if failures == 2 else "ies",
                        self.worker_id,
                        released,
                    )
                    failures = 0
                report = self.drain(stop=stop.is_set)
            except DatabaseError as exc:
                # The database went away (restart, failover): back off, reconnect, go on.
                failures += 1
                log_database_error(f"database error in worker {self.worker_id}", exc, failures)
                close_old_connections()
                stop.wait(settings.EMBEDPORTAL_IDLE_SLEEP * 5)
                continue
            total.add(report)
            if report.claimed == 0:
                stop.wait(settings.EMBEDPORTAL_IDLE_SLEEP)
        self._stop()
        return total

    def _stop(self) -> None:
        """A clean stop gives back the worker's leases and removes its heartbeat: it is not alive."""
        try:
            Document.objects.release(self.worker_id)
            WorkerHeartbeat.objects.stop()
        except DatabaseError as exc:
            logger.warning(
                "worker %s stopping without the database (%s): its leases return to the queue when they "
                "expire (%.0f s)",
                self.worker_id,
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                self.lease.total_seconds(),
            )

    def _heartbeat(self) -> None:
        # The queue health check reads these rows; throttled so a busy worker writes one
        # row every HEARTBEAT_EVERY seconds, not one per batch.
        if time.monotonic() - self._last_beat >= HEARTBEAT_EVERY:
            WorkerHeartbeat.objects.beat(self.role)
            self._last_beat = time.monotonic()

    # -- stages -------------------------------------------------------------------------

    def _recording(self, collection: Collection) -> EmbeddingIngestionPipeline:
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
            _advisory(lambda: ProviderCircuit.objects.record_success(collection), None)
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
                state = _advisory(record, CircuitState.CLOSED)
                exc.circuit_open = state != CircuitState.CLOSED
            raise

    def _defer(self, collection: Collection, deferred: list[tuple[Document, PipelineError]], report: Report) -> None:
        """Back to the queue, pending, after the backoff (or the provider's Retry-After): an
        outage is no document's fault, and a worker must not wait it out holding them."""
        if not deferred:
            return
        exc = deferred[0][1]
        until = timezone.now() + timedelta(seconds=self.retry.defer_delay(exc, exc.tries))
        message = scrub(f"deferred: {exc}", api_key(collection))
        n = Document.objects.filter(pk__in=[doc.pk for doc, _ in deferred]).defer_until(self.worker_id, until, message)
        report.deferred += n
        self.metrics.DOCUMENTS.labels(outcome="deferred").inc(n)
        logger.warning(
            "deferred %d document(s) of %s until %s%s: %s",
            n,
            collection.name,
            until.isoformat(timespec="seconds"),
            " (provider circuit open)" if exc.circuit_open else "",
            message,
        )

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

    def _with_retries(self, attempt: Callable[[], T], report: Report) -> T:
        """Run `attempt`, retrying transient errors with backoff; permanent ones raise at once."""
        tries, n = self.retry.tries, 1
        while True:
            try:
                return attempt()
            except PipelineError as exc:
                self._count_error(exc, report)
                exc.tries = n
                # An open circuit means the provider is down for everyone: no more tries now.
                if not exc.transient or n >= tries or exc.circuit_open:
                    raise
                logger.warning("%s (try %d of %d)", exc, n, tries)
                self.retry.sleep(self.retry.delay(exc, n))
                n += 1

    def _count_error(self, exc: PipelineError, report: Report) -> None:
        # Every failed try counts, retries included: errors_total is diagnostic, not the SLI.
        # Concurrent provider calls (_run_calls) count from their own threads.
        with _COUNTING:
            report.errors[exc.error_type] += 1
        self.metrics.ERRORS.labels(error_type=str(exc.error_type)).inc()

    def _fail(self, doc: Document, exc: PipelineError, report: Report) -> None:
        """Fail a document; receivers of `document_failed` (reprocessing records the failure for
        its workflow) write in the same transaction, so both commit or neither does."""
        message = scrub(str(exc), api_key(doc.collection))
        with transaction.atomic():
            failed = Document.objects.filter(pk=doc.pk).mark_failed(self.worker_id, message)
            if failed:
                signals.document_failed.send(sender=type(self), document_id=doc.pk, error=exc, message=message)
                if not doc.collection.is_reserved:  # scratch collections stay out of the SLOs
                    history.record(doc.collection_id, failed=failed)
        report.failed += failed
        self.metrics.DOCUMENTS.labels(outcome="failed").inc(failed)
        logger.warning("document %s failed: %s", doc.pk, message)
