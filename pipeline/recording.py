"""Recording each batch once (`record`: Prometheus and one BatchTiming row) and each search; the one
place reserved collections are filtered (docs/architecture.md, `pipeline/recording.py`)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from pipeline import history
from pipeline import metrics as prometheus
from pipeline.choices import Stage
from pipeline.history import bucket_counts
from pipeline.metrics import FRESHNESS_BUCKETS
from pipeline.models import BENCHMARK_PREFIX, Collection


@dataclass
class BatchResult:
    """One collection's share of a claimed batch. Stage seconds are wall time of the whole stage
    for the group, which every one of its documents waited for."""

    collection: Collection
    worker: str
    size: int  # documents of the group
    claim_seconds: float
    queue_wait: float  # mean of enqueued -> claimed over the group
    batch_size: int  # the collection's embedding batch size at the claim
    embedded: int = 0  # stored
    failed: int = 0
    superseded: int = 0  # re-enqueued with new text (or lease lost) while we worked
    deferred: int = 0
    chunks: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    embedding_documents: int = 0  # the group minus documents that chunked to nothing
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    total_seconds: float = 0.0
    freshness_lags: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def bulk(self) -> bool:
        """Claimed while the collection loads in bulk (pipeline.backfill: a first load, backfill or re-embed)."""
        return self.collection.building_generation is not None

    @property
    def fresh(self) -> int:
        """Stored documents embedded within the collection's freshness SLA (a lag equal to it is within)."""
        sla = self.collection.freshness_sla.total_seconds()
        return sum(lag <= sla for lag in self.freshness_lags)


def metric_label(collection: str) -> str:
    """A collection's `collection` label: its name, every benchmark collection folded into "benchmark"."""
    return "benchmark" if collection.startswith(BENCHMARK_PREFIX) else collection


def record(result: BatchResult, metrics: Any = prometheus, at: datetime | None = None) -> None:
    """Prometheus (through `metrics`: pipeline.metrics, or a benchmark's stand-in), then the row."""
    if result.collection.is_reserved:
        return
    name = metric_label(result.collection.name)
    for stage, documents in (
        (Stage.CHUNKING, result.size),
        (Stage.EMBEDDING, result.embedding_documents),
        (Stage.STORAGE, result.embedded + result.superseded),
    ):
        if stage in result.seconds:
            metrics.observe_stage(stage, result.seconds[stage], documents, name, result.bulk)
    if result.embedded:
        metrics.observe_stage("total", result.total_seconds, result.embedded, name, result.bulk)
    _count_errors(result, metrics, name)
    for outcome in prometheus.OUTCOMES:
        if n := getattr(result, outcome):
            metrics.DOCUMENTS.labels(outcome=outcome, collection=name).inc(n)
    metrics.CHUNKS.inc(result.chunks)
    metrics.COST.labels(collection=name).inc(result.cost_usd)
    for lag in result.freshness_lags:
        metrics.FRESHNESS_LAG.observe(lag)
    if lags := result.freshness_lags:
        fresh = result.fresh
        # Both series from the first judged document: "no late document yet" reads 0, not no data.
        metrics.FRESHNESS.labels(collection=name, within_sla="true").inc(fresh)
        metrics.FRESHNESS.labels(collection=name, within_sla="false").inc(len(lags) - fresh)
    if result.embedded or result.failed:  # a batch only deferred has no figure to keep
        _write(result, at or timezone.now())


def record_errors(result: BatchResult, metrics: Any = prometheus) -> None:
    """Only the errors of a batch that cannot be recorded (the database went away under it): the tries it
    cost must still count, or the connection-lost alert, which reads them, stays silent through an outage."""
    if not result.collection.is_reserved:
        _count_errors(result, metrics, metric_label(result.collection.name))
    result.errors.clear()  # counted once, whichever of the storage thread and the worker's gets here first


def _count_errors(result: BatchResult, metrics: Any, name: str) -> None:
    for error_type, n in result.errors.items():
        metrics.ERRORS.labels(error_type=str(error_type), collection=name).inc(n)


_RECORD_SQL = """
WITH timing AS (
    INSERT INTO pipeline_batchtiming
           (collection_id, worker, finished_at, documents, failed, chunks, tokens, cost_usd, claim_seconds,
            chunking_seconds, embedding_seconds, storage_seconds, total_seconds, queue_wait_seconds, batch_size,
            freshness, fresh, bulk, rolled_up)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::bigint[], %s, %s, false)
    RETURNING collection_id, finished_at, documents, tokens, cost_usd
)
INSERT INTO pipeline_collectioncost AS c (collection_id, documents, tokens, cost_usd, month, month_cost_usd, updated_at)
SELECT collection_id, documents, tokens, cost_usd, date_trunc('month', finished_at AT TIME ZONE 'UTC')::date, cost_usd,
       finished_at
  FROM timing
ON CONFLICT (collection_id) DO UPDATE
   SET documents = c.documents + EXCLUDED.documents,
       tokens = c.tokens + EXCLUDED.tokens,
       cost_usd = c.cost_usd + EXCLUDED.cost_usd,
       -- A new month starts from this batch's spend; a late batch of a past month leaves it alone.
       month_cost_usd = CASE WHEN c.month = EXCLUDED.month THEN c.month_cost_usd + EXCLUDED.month_cost_usd
                             WHEN c.month IS NULL OR c.month < EXCLUDED.month THEN EXCLUDED.month_cost_usd
                             ELSE c.month_cost_usd END,
       month = greatest(c.month, EXCLUDED.month),
       updated_at = EXCLUDED.updated_at
"""


def _write(r: BatchResult, at: datetime) -> None:
    """One statement, in autocommit: the running total's row lock lasts the statement, not a batch."""
    seconds = [r.seconds.get(stage, 0.0) for stage in (Stage.CHUNKING, Stage.EMBEDDING, Stage.STORAGE)]
    with connection.cursor() as cur:
        cur.execute(
            _RECORD_SQL,
            [r.collection.pk, r.worker[:200], at, r.embedded, r.failed, r.chunks, r.tokens, r.cost_usd]
            + [r.claim_seconds, *seconds, r.total_seconds, r.queue_wait, r.batch_size]
            + [bucket_counts(FRESHNESS_BUCKETS, r.freshness_lags), r.fresh, r.bulk],
        )


# The collection's latest search times (the optimizer's) and its minute's history row (the SLO's
# window), in one statement.
_SEARCH_SQL = f"""
WITH latest AS (
    INSERT INTO pipeline_searchlatency AS s (collection_id, searches, recent, last_at)
    VALUES (%(collection)s, 1, ARRAY[%(seconds)s]::double precision[], %(at)s)
    ON CONFLICT (collection_id) DO UPDATE
       SET searches = s.searches + 1,
           recent = (s.recent || EXCLUDED.recent)[greatest(1, cardinality(s.recent) + 2 - %(keep)s):],
           last_at = EXCLUDED.last_at
)
INSERT INTO {history.TABLE} AS a
       (collection_id, seconds, start, arrived, embedded, failed, latency, freshness, searches)
VALUES (%(collection)s, {history.MINUTE}, date_trunc('minute', %(at)s), 0, 0, 0, {history.ZEROS}, %(buckets)s::bigint[])
{history.ADD}
"""


def record_search(collection: Collection, seconds: float, source: str = "other", at: datetime | None = None) -> None:
    """embedding_pipeline_search_seconds{source}, the latest search times and the minute's search buckets."""
    if collection.is_reserved:
        return
    prometheus.SEARCH_LATENCY.labels(source=source).observe(seconds)
    with connection.cursor() as cur:
        cur.execute(
            _SEARCH_SQL,
            {
                "collection": collection.pk,
                "seconds": seconds,
                "at": at or timezone.now(),
                "keep": settings.EMBEDPORTAL_OPTIMIZER_EVALUATE_SEARCHES,
                "buckets": bucket_counts(prometheus.CALL_BUCKETS, [seconds]),
            },
        )
