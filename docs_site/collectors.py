"""Scrape-time documentation gauges, from what the last documentation check stored.

The check (`manage.py docs check`, the scheduled `docs_site.tasks.check_documentation`, the docs
API) walks Git and builds the OpenAPI schema; a scrape only reads its rows, so it stays cheap.
"""

from __future__ import annotations

from embedportal import collectors

FRESHNESS = "documentation_freshness_embedding_pipeline_operations"
COVERAGE = "documentation_coverage_embedding_pipeline_operations"


class DatabaseCollector(collectors.DatabaseCollector):
    subject = "documentation"
    families = collectors.fresh(
        (
            FRESHNESS,
            "Seconds a documentation page lags behind the newest change of what it covers (0 when fresh).",
            ["page"],
        ),
        (
            COVERAGE,
            "Documented / existing items per inventory (settings, endpoints, metrics, alerts, commands).",
            ["kind"],
        ),
    )

    def fill(self, cur, freshness, coverage) -> None:
        from docs_site.models import DocCoverage, DocPage

        # Bounded: one row per page of the docs folder (tens).
        for path, lag in DocPage.objects.values_list("path", "lag_seconds"):
            freshness.add_metric([path], lag)
        for row in DocCoverage.objects.all():
            coverage.add_metric([row.kind], row.ratio)
