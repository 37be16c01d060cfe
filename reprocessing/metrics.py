"""Reprocessing metrics: counters and histograms, multiprocess-safe (no Gauges: a gauge per process
would not add up). Database-derived values are computed at scrape time by
reprocessing.collectors."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REPROCESSED = Counter(
    "pipeline_reprocessing",
    "Documents requeued for reprocessing, by reason: the error type of their failure, or stale.",
    ["reason"],
)
# One pass of a schedule; the pass's own work is bounded by its batch sizes, so minutes mean trouble.
PASS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
REPROCESSING_PASS = Histogram(
    "embedding_pipeline_reprocessing_pass_seconds",
    "Seconds one reprocessing workflow pass took (requeue due failures).",
    buckets=PASS_BUCKETS,
)
STALENESS_PASS = Histogram(
    "embedding_pipeline_staleness_pass_seconds",
    "Seconds one staleness pass took (count stale documents and requeue them).",
    buckets=PASS_BUCKETS,
)
