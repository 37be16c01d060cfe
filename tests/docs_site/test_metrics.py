"""The documentation gauges on /metrics, from what the last check stored."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from prometheus_client.parser import text_string_to_metric_families

from docs_site.generators import MODULES
from docs_site.models import DocCoverage, DocPage

pytestmark = pytest.mark.django_db


def scrape(client) -> dict[str, dict[tuple, float]]:
    body = client.get("/metrics").content.decode()
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_freshness_and_coverage_gauges_follow_the_stored_check(client, settings, tmp_path) -> None:
    assert "documentation_freshness_embedding_pipeline_operations" not in scrape(client)  # nothing checked yet

    docs = tmp_path / "docs"
    settings.EMBEDPORTAL_DOCS_DIR = docs
    call_command("docs", "generate")
    (docs / "guide.md").write_text("---\ncovers:\n  files: [no/such/file.py]\n---\n\n# A guide\n")
    call_command("docs", "check")

    metrics = scrape(client)
    freshness = metrics["documentation_freshness_embedding_pipeline_operations"]
    assert freshness[(("page", "reference/api.md"),)] == 0
    assert freshness[(("page", "guide.md"),)] > 0  # covers a file that does not exist: stale
    assert len(freshness) == DocPage.objects.count() == len(MODULES) + 1  # the generated pages and the guide
    coverage = metrics["documentation_coverage_embedding_pipeline_operations"]
    assert {dict(k)["kind"] for k in coverage} == {"settings", "endpoints", "metrics", "alerts", "commands"}
    assert coverage[(("kind", "settings"),)] == 1.0
    assert coverage[(("kind", "alerts"),)] == 0.0  # this docs folder has no runbooks
    endpoints = DocCoverage.objects.get(kind="endpoints")
    assert coverage[(("kind", "endpoints"),)] == pytest.approx(endpoints.documented / endpoints.existing)


def test_the_schedule_is_registered_on_migrate() -> None:
    from django_q.models import Schedule

    call_command("migrate", "docs_site", verbosity=0)
    schedule = Schedule.objects.get(name="docs-freshness")
    assert schedule.func == "docs_site.tasks.check_documentation" and schedule.minutes == 60
