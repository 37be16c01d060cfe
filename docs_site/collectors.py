"""Scrape-time documentation gauges, from what the last documentation check stored
(notes: docs/architecture.md, "Module notes")."""

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
