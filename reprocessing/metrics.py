"""Reprocessing metrics: counters only, multiprocess-safe (no Gauges: a gauge per process
would not add up). Database-derived values are computed at scrape time by
reprocessing.collectors."""

from __future__ import annotations

from prometheus_client import Counter

REPROCESSED = Counter(
    "pipeline_reprocessing",
    "Documents requeued for reprocessing, by reason: the error type of their failure, or stale.",
    ["reason"],
)
