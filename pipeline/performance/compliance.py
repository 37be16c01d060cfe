"""Performance SLOs' compliance (0..1), from the batch rows and each collection's latest searches,
as a scrape-time gauge (PerformanceSLOCollector) and stepped for the admin's Performance page
(`compliance_trend`); docs/performance.md defines them."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from embedportal.collectors import DatabaseCollector
from pipeline.percentiles import searches
from pipeline.performance import capacity, slos
from pipeline.performance.optimizer.figures import STEP_SQL, trend_steps

logger = logging.getLogger(__name__)

COMPLIANCE = "performance_slo_compliance_embedding_pipeline_operations"
TARGET = "performance_slo_target_embedding_pipeline_operations"


def search_latency() -> tuple[float | None, int]:
    """(p95 seconds, searches) of every collection's latest searches."""
    count, p95, _ = searches(slos.target("search_latency"))
    return p95, count


def compliance(window: int | None = None) -> dict[str, float | None]:
    """The gauge's figures: the window's batches as one step of compliance_trend, the latest searches."""
    now = timezone.now()
    found = compliance_trend(now - timedelta(seconds=window or settings.EMBEDPORTAL_OPTIMIZER_WINDOW_SECONDS), now, 1)
    return {
        "document_latency": found["document_latency"][0],
        "search_latency": searches(slos.target("search_latency"))[2],
        "throughput_per_worker": found["throughput_per_worker"][0],
    }


def compliance_trend(since: datetime, until: datetime, steps: int) -> dict[str, Any]:
    """Compliance of the SLOs the batch timings measure, each step on its own batches (the gauge
    reads a sliding window instead): the admin's chart over time. None where a step has no
    documents, or no batches of the throughput model. search_latency has no history: only each
    collection's latest searches are kept."""
    step, labels = trend_steps(since, until, steps)
    model = settings.EMBEDPORTAL_SLO_THROUGHPUT_MODEL
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT {STEP_SQL} AS step, sum(t.documents) FILTER (WHERE t.total_seconds <= %s), sum(t.documents), "
            "sum(t.documents) FILTER (WHERE c.model = %s), "
            "sum(t.claim_seconds + t.total_seconds) FILTER (WHERE c.model = %s) "
            "FROM pipeline_batchtiming t JOIN pipeline_collection c ON c.id = t.collection_id "
            "WHERE t.finished_at >= %s AND t.finished_at < %s GROUP BY 1",
            [since, step, slos.target("document_latency"), model, model, since, until],
        )
        rows = {row[0]: row[1:] for row in cur.fetchall()}
    latency: list[float | None] = []
    throughput: list[float | None] = []
    for i in range(steps):
        good, total, documents, seconds = rows.get(i, (None, None, None, None))
        latency.append(round((good or 0) / total, 6) if total else None)
        rate = documents / seconds if documents and seconds else None
        throughput.append(None if rate is None else round(min(1.0, rate / slos.target("throughput_per_worker")), 6))
    return {
        "labels": labels,
        "step_seconds": round(step, 3),
        "document_latency": latency,
        "throughput_per_worker": throughput,
    }


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily(
            COMPLIANCE,
            "Performance SLO compliance, 0..1: share of documents / searches within their p95 target (held at "
            ">= 0.95), or measured throughput per worker over its target (capped at 1).",
            labels=["slo"],
        ),
        GaugeMetricFamily(
            TARGET,
            "Performance SLO targets: seconds (document_latency, search_latency) or docs/s per worker.",
            labels=["slo"],
        ),
    )


class PerformanceSLOCollector(DatabaseCollector):
    """Scrape-time compliance and capacity gauges (listed in EMBEDPORTAL_METRICS_COLLECTORS)."""

    subject = "performance SLO"

    def families(self) -> tuple[GaugeMetricFamily, ...]:
        return (*_families(), *capacity.gauge_families())

    def fill(self, cur, compliant, target, rate, measured) -> None:
        for slo, value in slos.targets().items():
            target.add_metric([slo], value)
        try:
            with transaction.atomic():  # a savepoint: the targets survive it
                values = compliance()
        except DatabaseError:
            logger.exception("performance SLO metrics: database query failed")
            values = {}
        for slo, value in values.items():
            if value is not None:
                compliant.add_metric([slo], value)
        try:
            with transaction.atomic():  # a savepoint: the SLO gauges survive a failed capacity query
                capacity.fill_gauges(rate, measured)
        except DatabaseError:
            logger.exception("capacity metrics: database query failed")
