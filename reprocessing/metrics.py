"""Reprocessing metrics. The passes run in one-shot pods, so their counts are written to the
database (PassTotals) and exported at scrape time by reprocessing.collectors, with the
database-derived gauges: every replica exports the same values (max() across them, never sum())."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection

from pipeline.history import bucket_counts

REPROCESSED = "pipeline_reprocessing"
REPROCESSING_PASS = "embedding_pipeline_reprocessing_pass_seconds"
STALENESS_PASS = "embedding_pipeline_staleness_pass_seconds"
# One pass of a schedule; the pass's own work is bounded by its batch sizes, so minutes mean trouble.
PASS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
PASSES = {REPROCESSING_PASS: "reprocessing", STALENESS_PASS: "staleness"}

_ADD = """INSERT INTO reprocessing_passtotals AS t (key, count, seconds, buckets) VALUES (%s, %s, %s, %s)
ON CONFLICT (key) DO UPDATE SET count = t.count + EXCLUDED.count, seconds = t.seconds + EXCLUDED.seconds,
    buckets = coalesce((SELECT array_agg(coalesce(t.buckets[i], 0) + EXCLUDED.buckets[i] ORDER BY i)
                        FROM generate_subscripts(EXCLUDED.buckets, 1) AS i), t.buckets)"""


def _add(key: str, count: int, seconds: float = 0.0, buckets: list[int] | None = None) -> None:
    with connection.cursor() as cur:
        cur.execute(_ADD, [key, count, seconds, buckets or []])


def count_requeued(reason: str, documents: int) -> None:
    """`pipeline_reprocessing_total{reason}` += documents (inside the caller's transaction: counted
    exactly when the requeue commits)."""
    if documents:
        _add(f"requeued:{reason}", documents)


@contextmanager
def timed_pass(family: str) -> Iterator[None]:
    """Record the seconds of what it wraps in the pass histogram `family`; as a decorator (a
    contextmanager is one), each call, as prometheus_client's .time(). Only a pass that finished
    counts: one that fails every time must look stopped (EmbeddingPipelinePassesStopped)."""
    started = time.perf_counter()
    yield
    seconds = time.perf_counter() - started
    _add(f"pass:{PASSES[family]}", 1, seconds, bucket_counts(PASS_BUCKETS, [seconds]))
