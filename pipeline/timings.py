"""Per-batch stage timings and spend in the database (BatchTiming, CollectionCost): the optimizer's
figures without Prometheus, and each collection's embedding cost since it was created; and each
collection's latest search times (SearchLatency), which the search histogram cannot tell apart.

A worker writes one row per collection of a claimed batch, after its documents are stored, with
one statement that also adds the batch's tokens and cost to the collection's running total.
Rows older than EMBEDPORTAL_BATCH_TIMING_RETENTION_DAYS are pruned by the hourly roll-up
schedule; the running totals are never pruned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone


@dataclass(frozen=True)
class BatchTimes:
    """One collection's share of a batch. Seconds are wall time of the whole stage for the group,
    which every one of its documents waited for."""

    collection_id: int
    worker: str
    documents: int
    chunks: int
    tokens: int
    cost_usd: float
    claim: float
    chunking: float
    embedding: float
    storage: float
    total: float
    queue_wait: float
    batch_size: int


_RECORD_SQL = """
WITH timing AS (
    INSERT INTO pipeline_batchtiming
           (collection_id, worker, finished_at, documents, chunks, tokens, cost_usd, claim_seconds,
            chunking_seconds, embedding_seconds, storage_seconds, total_seconds, queue_wait_seconds, batch_size)
    VALUES (%(collection)s, %(worker)s, %(at)s, %(documents)s, %(chunks)s, %(tokens)s, %(cost)s, %(claim)s,
            %(chunking)s, %(embedding)s, %(storage)s, %(total)s, %(queue_wait)s, %(batch_size)s)
)
INSERT INTO pipeline_collectioncost AS c (collection_id, documents, tokens, cost_usd, updated_at)
VALUES (%(collection)s, %(documents)s, %(tokens)s, %(cost)s, %(at)s)
ON CONFLICT (collection_id) DO UPDATE
   SET documents = c.documents + EXCLUDED.documents,
       tokens = c.tokens + EXCLUDED.tokens,
       cost_usd = c.cost_usd + EXCLUDED.cost_usd,
       updated_at = EXCLUDED.updated_at
"""


def record(times: BatchTimes, at: datetime | None = None) -> None:
    """One statement, in autocommit: the running total's row lock lasts the statement, not a batch."""
    with connection.cursor() as cur:
        cur.execute(
            _RECORD_SQL,
            {
                "collection": times.collection_id,
                "worker": times.worker[:200],
                "at": at or timezone.now(),
                "documents": times.documents,
                "chunks": times.chunks,
                "tokens": times.tokens,
                "cost": times.cost_usd,
                "claim": times.claim,
                "chunking": times.chunking,
                "embedding": times.embedding,
                "storage": times.storage,
                "total": times.total,
                "queue_wait": times.queue_wait,
                "batch_size": times.batch_size,
            },
        )


def prune(now: datetime | None = None) -> int:
    """Delete batch rows older than EMBEDPORTAL_BATCH_TIMING_RETENTION_DAYS; returns rows deleted."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.EMBEDPORTAL_BATCH_TIMING_RETENTION_DAYS)
    with connection.cursor() as cur:
        cur.execute("DELETE FROM pipeline_batchtiming WHERE finished_at < %s", [cutoff])
        return cur.rowcount


_SEARCH_SQL = """
INSERT INTO pipeline_searchlatency AS s (collection_id, searches, recent, last_at)
VALUES (%(collection)s, 1, ARRAY[%(seconds)s]::double precision[], %(at)s)
ON CONFLICT (collection_id) DO UPDATE
   SET searches = s.searches + 1,
       recent = (s.recent || EXCLUDED.recent)[greatest(1, cardinality(s.recent) + 2 - %(keep)s):],
       last_at = EXCLUDED.last_at
"""


def record_search(collection_id: int, seconds: float, at: datetime | None = None) -> None:
    """Add one search's seconds to the collection's latest EMBEDPORTAL_OPTIMIZER_EVALUATE_SEARCHES
    (one upsert, in autocommit; the row lock lasts the statement)."""
    with connection.cursor() as cur:
        cur.execute(
            _SEARCH_SQL,
            {
                "collection": collection_id,
                "seconds": seconds,
                "at": at or timezone.now(),
                "keep": settings.EMBEDPORTAL_OPTIMIZER_EVALUATE_SEARCHES,
            },
        )
