"""The durable minute/hour history (CollectionActivity): docs/architecture.md, `pipeline/history.py`."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from pipeline.metrics import CALL_BUCKETS, FRESHNESS_BUCKETS, LATENCY_BUCKETS

MINUTE = 60
HOUR = 3600
TABLE = "pipeline_collectionactivity"
# One element per bound plus +Inf (the model's CHECK constraints hold the database to this).
LATENCY_SIZE = len(LATENCY_BUCKETS) + 1
FRESHNESS_SIZE = len(FRESHNESS_BUCKETS) + 1
SEARCH_SIZE = len(CALL_BUCKETS) + 1  # the search histogram's bounds


def bucket_counts(bounds: Sequence[float], values: Iterable[float]) -> list[int]:
    """Plain counts per bucket, Prometheus' `le` (a value equal to a bound is in its bucket); last +Inf."""
    counts = [0] * (len(bounds) + 1)
    for value in values:
        counts[bisect.bisect_left(bounds, value)] += 1
    return counts


def minute_of(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def hour_of(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _array(element: str, size: int) -> str:
    """ARRAY[...] of `element` formatted with each index i from 1 to size."""
    return "ARRAY[" + ", ".join(element.format(i=i) for i in range(1, size + 1)) + "]::bigint[]"


ZEROS = f"{_array('0', LATENCY_SIZE)}, {_array('0', FRESHNESS_SIZE)}"


# Adds to the minute's row, arrays element by element (no operator for it; CHECK constraints fix their sizes).
ADD = f"""
ON CONFLICT (collection_id, seconds, start) DO UPDATE
   SET arrived = a.arrived + EXCLUDED.arrived,
       embedded = a.embedded + EXCLUDED.embedded,
       failed = a.failed + EXCLUDED.failed,
       fresh = a.fresh + EXCLUDED.fresh,
       latency = {_array("a.latency[{i}] + EXCLUDED.latency[{i}]", LATENCY_SIZE)},
       freshness = {_array("a.freshness[{i}] + EXCLUDED.freshness[{i}]", FRESHNESS_SIZE)},
       searches = {_array("a.searches[{i}] + EXCLUDED.searches[{i}]", SEARCH_SIZE)}"""


def record_arrivals(collection_id: int, arrived: int, at: datetime | None = None) -> None:
    """Add enqueued documents to this minute's row of a collection."""
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {TABLE} AS a (collection_id, seconds, start, arrived, embedded, failed, latency, freshness) "
            f"VALUES (%s, {MINUTE}, %s, %s, 0, 0, {ZEROS}) {ADD}",
            [collection_id, minute_of(at or timezone.now()), arrived],
        )


# A batch row's latency counts: all its stored documents in the bucket of its total seconds (`le`), but
# a bulk load's (the latency SLO leaves them out, as the histogram's bulk="true" series).
_BATCH_LATENCY = (
    "ARRAY["
    + ", ".join(
        f"CASE WHEN NOT b.bulk AND {low} < b.total_seconds AND b.total_seconds <= {high} THEN b.documents ELSE 0 END"
        for low, high in zip(("'-infinity'", *LATENCY_BUCKETS), (*LATENCY_BUCKETS, "'infinity'"), strict=True)
    )
    + "]::bigint[]"
)
# Batch rows as history rows, for the roll-up and readers of the minutes not rolled up yet.
BATCH_ROWS = f"""
SELECT b.collection_id, {MINUTE} AS seconds, date_trunc('minute', b.finished_at) AS start, 0 AS arrived,
       b.documents::bigint AS embedded, b.failed::bigint AS failed, b.fresh::bigint AS fresh,
       {_BATCH_LATENCY} AS latency, b.freshness, NULL::integer AS queue_depth,
       {_array("0", SEARCH_SIZE)} AS searches
  FROM pipeline_batchtiming b"""


# The history as readers see it (pipeline_batchtiming_unrolled, a partial index, serves the second part).
ROWS = f"""(SELECT collection_id, seconds, start, arrived, embedded, failed, fresh, latency, freshness, queue_depth,
          searches
   FROM {TABLE} UNION ALL {BATCH_ROWS} WHERE NOT b.rolled_up)"""


def roll_up_batches(until: datetime | None = None) -> int:
    """Move batch rows finished before `until` (default: this minute) into their minutes' rows, in one
    statement: a concurrent roll-up blocks on the rows marked, then skips them."""
    with connection.cursor() as cur:
        cur.execute(
            f"""
            WITH moved AS (
                UPDATE pipeline_batchtiming b SET rolled_up = true
                 WHERE NOT b.rolled_up AND b.finished_at < %s RETURNING b.*
            ), batch AS ({BATCH_ROWS.replace("pipeline_batchtiming b", "moved b")})
            INSERT INTO {TABLE} AS a
                   (collection_id, seconds, start, arrived, embedded, failed, fresh, latency, freshness)
            SELECT collection_id, {MINUTE}, start, 0, sum(embedded), sum(failed), sum(fresh),
                   {_array("sum(latency[{i}])", LATENCY_SIZE)}, {_array("sum(freshness[{i}])", FRESHNESS_SIZE)}
              FROM batch GROUP BY collection_id, start
            {ADD}
            """,
            [until or minute_of(timezone.now())],
        )
        return cur.rowcount


def prune_batches() -> int:
    """Delete rolled-up batch rows older than EMBEDPORTAL_BATCH_TIMING_RETENTION_DAYS; returns rows deleted."""
    cutoff = timezone.now() - timedelta(days=settings.EMBEDPORTAL_BATCH_TIMING_RETENTION_DAYS)
    with connection.cursor() as cur:
        cur.execute("DELETE FROM pipeline_batchtiming WHERE finished_at < %s AND rolled_up", [cutoff])
        return cur.rowcount


# The count is an index-only scan of pipeline_document_status, like the queue-depth gauge.
_SAMPLE_SQL = f"""
INSERT INTO {TABLE} AS a (collection_id, seconds, start, arrived, embedded, failed, latency, freshness, queue_depth)
SELECT c.id, {MINUTE}, %s, 0, 0, 0, {ZEROS},
       (SELECT count(*) FROM pipeline_document d WHERE d.collection_id = c.id AND d.status = 'pending')
  FROM pipeline_collection c
ON CONFLICT (collection_id, seconds, start) DO UPDATE SET queue_depth = EXCLUDED.queue_depth
"""


def sample_queue_depth(at: datetime | None = None) -> None:
    """Record every collection's pending count in this minute's row (the heartbeat schedule, every minute)."""
    with connection.cursor() as cur:
        cur.execute(_SAMPLE_SQL, [minute_of(at or timezone.now())])


# Whole hours of minute rows into hour rows; a concurrent roll-up finds the rows gone.
_ROLL_UP_SQL = f"""
WITH moved AS (
    DELETE FROM {TABLE} WHERE seconds = {MINUTE} AND start < %s
    RETURNING collection_id, start, arrived, embedded, failed, fresh, latency, freshness, queue_depth, searches
)
INSERT INTO {TABLE} AS a
       (collection_id, seconds, start, arrived, embedded, failed, fresh, latency, freshness, queue_depth, searches)
SELECT collection_id, {HOUR}, date_trunc('hour', start), sum(arrived), sum(embedded), sum(failed), sum(fresh),
       {_array("sum(latency[{i}])", LATENCY_SIZE)}, {_array("sum(freshness[{i}])", FRESHNESS_SIZE)}, max(queue_depth),
       {_array("sum(searches[{i}])", SEARCH_SIZE)}
  FROM moved
 GROUP BY collection_id, date_trunc('hour', start)
{ADD},
       queue_depth = GREATEST(a.queue_depth, EXCLUDED.queue_depth)
"""


@dataclass
class RollUp:
    hours_written: int
    pruned: int


def roll_up(now: datetime | None = None) -> RollUp:
    """Roll old minutes into hours (queue depth: the highest sample), delete rows past retention."""
    now = now or timezone.now()
    cutoff = hour_of(now - timedelta(days=settings.EMBEDPORTAL_HISTORY_MINUTE_DAYS))
    roll_up_batches(minute_of(now))
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(_ROLL_UP_SQL, [cutoff])
        written = cur.rowcount
        cur.execute(
            f"DELETE FROM {TABLE} WHERE start < %s",
            [now - timedelta(days=settings.EMBEDPORTAL_HISTORY_RETENTION_DAYS)],
        )
        pruned = cur.rowcount
    return RollUp(written, pruned)
