"""Figures for the admin's pipeline overview page: queue, throughput, workers and stage percentiles
from the database; error counts by type from every process's Prometheus counters (failed tries
leave no row); health from the checks. The browser draws `chart_data` with the vendored Chart.js."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from embedportal.metrics import multiprocess_dir
from pipeline import circuits, collectors, health, metrics, percentiles
from pipeline.choices import DocumentStatus
from pipeline.models import Collection, WorkerHeartbeat

THROUGHPUT_MINUTES = 60


def _per_minute(now: Any) -> list[int]:
    """Documents embedded in each of the last THROUGHPUT_MINUTES minutes, oldest first."""
    since = now - timedelta(minutes=THROUGHPUT_MINUTES)
    with connection.cursor() as cur:
        # The batch rows, as the throughput gauge (a document embedded twice counts twice); a range
        # scan of pipeline_batchtiming_at.
        cur.execute(
            "SELECT floor(EXTRACT(EPOCH FROM (%s - finished_at)) / 60)::int AS ago, sum(documents)"
            " FROM pipeline_batchtiming WHERE finished_at > %s GROUP BY 1",
            [now, since],
        )
        counts = dict(cur.fetchall())
    return [counts.get(ago, 0) for ago in range(THROUGHPUT_MINUTES - 1, -1, -1)]


def _latency_rows(since: Any) -> list[dict[str, Any]]:
    found = percentiles.db_percentiles(since)
    if not found["total"].count:
        return []
    return [
        {"stage": s, "count": found[s].count, "p50": found[s].p50, "p95": found[s].p95}
        for s in ("chunking", "embedding", "storage", "total")
    ]


def context(seen: QuerySet[Collection], user: Any) -> dict[str, Any]:
    """The page's figures; the per-collection table holds the collections in `seen` (the user's)."""
    now = timezone.now()
    per_minute = _per_minute(now)
    checks = health.for_viewer(health.run_checks(cached=True), user)
    latencies = _latency_rows(now - timedelta(minutes=THROUGHPUT_MINUTES))
    errors = [{"type": kind, "count": int(n)} for kind, n in metrics.error_counts().items()]
    per_status = {status: Count("documents", filter=Q(documents__status=status)) for status in DocumentStatus.values}
    return {
        "snapshot": collectors.queue_snapshot(),
        "throughput_window": settings.EMBEDPORTAL_THROUGHPUT_WINDOW_SECONDS,
        "collections": list(seen.order_by("name").values("pk", "name", "model", "paused").annotate(**per_status)),
        "per_minute_total": sum(per_minute),
        "latencies": latencies,
        "errors": errors,
        # What charts.js draws (oldest minute first).
        "chart_data": {
            "per_minute": per_minute,
            "latencies": latencies,
            "errors": {row["type"]: row["count"] for row in errors},
        },
        "checks": checks,
        "circuits": [circuits.describe(c) for c in circuits.not_closed(user)],
        "healthy": all(c.ok for c in checks),
        "workers": list(WorkerHeartbeat.objects.alive().order_by("worker")),
        "multiprocess": multiprocess_dir() is not None,
    }
