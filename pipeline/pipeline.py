"""EmbeddingIngestionPipeline: claim -> chunk -> embed (LiteLLM) -> store (pgvector)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from pipeline import metrics, storage
from pipeline.choices import ErrorType, Stage
from pipeline.chunking import Chunker, ChunkText, chunker_for
from pipeline.embedding import PipelineError, embed_texts
from pipeline.models import Collection, Document

logger = logging.getLogger(__name__)

# A document is failed for good after this many claims that ended in a transient error.
MAX_ATTEMPTS = 5


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Report:
    claimed: int = 0
    embedded: int = 0
    failed: int = 0
    released: int = 0
    chunks: int = 0
    batches: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, other: Report) -> None:
        for name in ("claimed", "embedded", "failed", "released", "chunks", "batches"):
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
            "released": self.released,
            "chunks": self.chunks,
            "batches": self.batches,
            "seconds": {str(k): round(v, 4) for k, v in self.seconds.items()},
            "errors": {str(k): v for k, v in self.errors.items()},
        }


class EmbeddingIngestionPipeline:
    """One worker's view of the pipeline. Many may run at once, in any process or host."""

    def __init__(
        self,
        worker_id: str | None = None,
        claim_batch: int | None = None,
        lease_seconds: int | None = None,
    ) -> None:
        self.worker_id = worker_id or new_worker_id()
        self.claim_batch = claim_batch or settings.EMBEDPORTAL_CLAIM_BATCH
        self.lease = timedelta(seconds=lease_seconds or settings.EMBEDPORTAL_LEASE_SECONDS)
        self._chunkers: dict[tuple, Chunker] = {}

    # -- loop ---------------------------------------------------------------------------

    def run_once(self) -> Report:
        """Claim one batch and process it. A report with claimed == 0 means the queue is empty."""
        report = Report()
        docs = Document.objects.claim(self.worker_id, self.claim_batch, self.lease)
        report.claimed = len(docs)
        if not docs:
            return report
        by_collection: dict[int, list[Document]] = defaultdict(list)
        for doc in docs:
            by_collection[doc.collection_id].append(doc)
        for group in by_collection.values():
            self._process(group[0].collection, group, report)
        report.batches = 1
        return report

    def drain(self, max_seconds: float | None = None, stop: Callable[[], bool] | None = None) -> Report:
        """Process batches until the queue is empty, time is up, or `stop()` says so."""
        total = Report()
        deadline = time.monotonic() + max_seconds if max_seconds else None
        while not (stop and stop()) and not (deadline and time.monotonic() > deadline):
            report = self.run_once()
            total.add(report)
            if report.claimed == 0:
                break
        return total

    def run_forever(self, stop: threading.Event) -> Report:
        total = Report()
        while not stop.is_set():
            try:
                report = self.drain(stop=stop.is_set)
            except DatabaseError:
                # The database went away (restart, failover): back off, reconnect, go on.
                logger.exception("database error in worker %s; retrying", self.worker_id)
                close_old_connections()
                stop.wait(settings.EMBEDPORTAL_IDLE_SLEEP * 5)
                continue
            total.add(report)
            if report.claimed == 0:
                stop.wait(settings.EMBEDPORTAL_IDLE_SLEEP)
        Document.objects.release(self.worker_id)
        return total

    # -- stages -------------------------------------------------------------------------

    def _chunker(self, c: Collection) -> Chunker:
        key = (c.chunking_strategy, c.chunk_unit, c.chunk_size, c.chunk_overlap, c.model)
        if key not in self._chunkers:
            self._chunkers[key] = chunker_for(c)
        return self._chunkers[key]

    def _process(self, collection: Collection, docs: list[Document], report: Report) -> None:
        started = t0 = time.perf_counter()
        chunked = self._chunker(collection).chunk_many([d.text for d in docs])
        report.seconds[Stage.CHUNKING] += time.perf_counter() - t0
        metrics.observe_stage(Stage.CHUNKING, time.perf_counter() - t0, len(docs))

        ready: list[tuple[Document, list[ChunkText]]] = []
        for doc, chunks in zip(docs, chunked, strict=True):
            if chunks:
                ready.append((doc, chunks))
            else:
                self._fail(
                    doc,
                    PipelineError(ErrorType.EMPTY_DOCUMENT, Stage.CHUNKING, "no text left to embed after chunking"),
                    report,
                )

        t0 = time.perf_counter()
        try:
            vectors = self._embed(collection, [c for _, chunks in ready for c in chunks])
        except PipelineError as exc:
            report.seconds[Stage.EMBEDDING] += time.perf_counter() - t0
            for doc, _ in ready:
                self._fail(doc, exc, report)
            return
        report.seconds[Stage.EMBEDDING] += time.perf_counter() - t0
        metrics.observe_stage(Stage.EMBEDDING, time.perf_counter() - t0, len(ready))

        results, offset = [], 0
        for doc, chunks in ready:
            results.append(
                storage.Embedded(
                    doc.pk, collection.pk, doc.content_hash, chunks, vectors[offset : offset + len(chunks)]
                )
            )
            offset += len(chunks)
        t0 = time.perf_counter()
        embedded_at = timezone.now()
        stored = set(storage.store(self.worker_id, results, embedded_at))
        report.seconds[Stage.STORAGE] += time.perf_counter() - t0
        metrics.observe_stage(Stage.STORAGE, time.perf_counter() - t0, len(results))
        metrics.observe_stage("total", time.perf_counter() - started, len(stored))
        chunks = sum(len(r.chunks) for r in results if r.document_id in stored)
        report.embedded += len(stored)
        report.chunks += chunks
        metrics.CHUNKS.inc(chunks)
        metrics.DOCUMENTS.labels(outcome="embedded").inc(len(stored))
        # A document re-enqueued with new text (or whose lease expired) while we worked.
        metrics.DOCUMENTS.labels(outcome="superseded").inc(len(results) - len(stored))
        for doc, _ in ready:
            if doc.pk in stored and doc.source_modified_at is not None:
                metrics.FRESHNESS_LAG.observe(max(0.0, (embedded_at - doc.source_modified_at).total_seconds()))

    def _embed(self, collection: Collection, chunks: list[ChunkText]) -> np.ndarray:
        """Embed all chunks, batched across documents up to the collection's batch size."""
        texts = [c.text for c in chunks]
        size = collection.batch_size
        parts = [embed_texts(collection, texts[i : i + size]) for i in range(0, len(texts), size)]
        return np.concatenate(parts) if parts else np.empty((0, collection.dimensions), np.float32)

    def _fail(self, doc: Document, exc: PipelineError, report: Report) -> None:
        report.errors[exc.error_type] += 1
        metrics.ERRORS.labels(error_type=str(exc.error_type)).inc()
        qs = Document.objects.filter(pk=doc.pk)
        if exc.transient and doc.attempts < MAX_ATTEMPTS:
            # Back off before the next claim: the provider's Retry-After, else exponential.
            delay = exc.retry_after if exc.retry_after is not None else min(2.0**doc.attempts, 300.0)
            report.released += qs.release(self.worker_id, timedelta(seconds=delay), str(exc))
            metrics.DOCUMENTS.labels(outcome="retried").inc()
            logger.warning("document %s: %s (will retry)", doc.pk, exc)
        else:
            report.failed += qs.mark_failed(self.worker_id, str(exc))
            metrics.DOCUMENTS.labels(outcome="failed").inc()
            logger.warning("document %s failed: %s", doc.pk, exc)
