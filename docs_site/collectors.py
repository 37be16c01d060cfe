"""Scrape-time documentation gauges, from what the last documentation check stored.

The check (`manage.py docs check`, the scheduled `docs_site.tasks.check_documentation`, the docs
API) walks Git and builds the OpenAPI schema; a scrape only reads its rows, so it stays cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db import DatabaseError
from prometheus_client.core import GaugeMetricFamily, Metric

logger = logging.getLogger(__name__)

FRESHNESS = "documentation_freshness_embedding_pipeline_operations"
COVERAGE = "documentation_coverage_embedding_pipeline_operations"


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily(
            FRESHNESS,
            "Seconds a documentation page lags behind the newest change of what it covers (0 when fresh).",
            labels=["page"],
        ),
        GaugeMetricFamily(
            COVERAGE,
            "Documented / existing items per inventory (settings, endpoints, metrics, alerts, commands).",
            labels=["kind"],
        ),
    )


class DatabaseCollector:
    def describe(self) -> Iterator[Metric]:
        yield from _families()

    def collect(self) -> Iterator[Metric]:
        from docs_site.models import DocCoverage, DocPage

        freshness, coverage = _families()
        try:
            # Bounded: one row per page of the docs folder (tens).
            for path, lag in DocPage.objects.values_list("path", "lag_seconds"):
                freshness.add_metric([path], lag)
            for row in DocCoverage.objects.all():
                coverage.add_metric([row.kind], row.ratio)
        except DatabaseError:
            logger.exception("documentation metrics: database query failed")
            return
        yield from (f for f in (freshness, coverage) if f.samples)
