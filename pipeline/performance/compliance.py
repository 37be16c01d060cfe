"""The performance SLOs' compliance (0..1) as scrape-time gauges, from the one evaluator
(slos.evaluate) over the optimizer's window; docs/performance.md defines them."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from embedportal import collectors
from pipeline.performance import capacity, slos

logger = logging.getLogger(__name__)

COMPLIANCE = "performance_slo_compliance_embedding_pipeline_operations"
TARGET = "performance_slo_target_embedding_pipeline_operations"
# EMBEDPORTAL_CAPACITY_MAX_AGE_DAYS for the stale-measurement alert (grafana/prometheus/capacity.rules.yml).
CAPACITY_MAX_AGE = "embedding_pipeline_capacity_max_age_seconds"
# The capacity (capacity.current), absent until a measurement exists; capacity.rules.yml and the dashboards
# read both by name.
CAPACITY = "embedding_pipeline_capacity_docs_per_second"
CAPACITY_MEASURED = "embedding_pipeline_capacity_measured_timestamp_seconds"


def compliance() -> dict[str, float | None]:
    """Each performance SLO's compliance over the optimizer's window."""
    now = timezone.now()
    since = now - timedelta(seconds=settings.EMBEDPORTAL_OPTIMIZER_WINDOW_SECONDS)
    return {name: found[0].ratio for name, found in slos.evaluate(since, now, only=set(slos.targets())).items()}


class PerformanceSLOCollector(collectors.DatabaseCollector):
    """Scrape-time compliance and capacity gauges (listed in EMBEDPORTAL_METRICS_COLLECTORS)."""

    subject = "performance SLO"

    families = collectors.fresh(
        (
            COMPLIANCE,
            "Performance SLO compliance, 0..1: share of documents / searches within their p95 target (held at "
            ">= 0.95), or measured throughput per worker over its target (capped at 1).",
            ["slo"],
        ),
        (TARGET, "Performance SLO targets: seconds (document_latency, search_latency) or docs/s per worker.", ["slo"]),
        (
            CAPACITY_MAX_AGE,
            "Seconds after which the capacity measurement is stale (EMBEDPORTAL_CAPACITY_MAX_AGE_DAYS)",
            [],
        ),
        (
            CAPACITY,
            "Measured sustained docs/s of one worker pod (EMBEDPORTAL_CAPACITY_WORKERS processes) times the "
            "worker pods the autoscaler may run (EMBEDPORTAL_MAX_WORKER_REPLICAS), for the slowest model in "
            "use; how: measured, usl, lower bound.",
            ["model", "workers", "replicas", "how"],
        ),
        (CAPACITY_MEASURED, "Unix time of the last capacity measurement.", ["model"]),
    )

    def fill(self, cur, compliant, target, max_age, rate, measured) -> None:
        max_age.add_metric([], settings.EMBEDPORTAL_CAPACITY_MAX_AGE_DAYS * 86400)
        for slo, value in slos.targets().items():
            if value is not None:
                target.add_metric([slo], value)
        try:
            with transaction.atomic():  # a savepoint: the targets survive it
                for slo, value in compliance().items():
                    if value is not None:
                        compliant.add_metric([slo], value)
        except DatabaseError:
            logger.exception("performance SLO metrics: database query failed")
        try:
            with transaction.atomic():  # a savepoint: the SLO gauges survive a failed capacity query
                if (cap := capacity.current()) is not None:
                    rate.add_metric([cap.model, str(cap.workers), str(cap.replicas), cap.how], cap.docs_per_second)
                    measured.add_metric([cap.model], cap.measured_at.timestamp())
        except DatabaseError:
            logger.exception("capacity metrics: database query failed")
