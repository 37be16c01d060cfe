"""django-q2 entry points: the hourly documentation check behind the admin status page and the
documentation gauges."""

from __future__ import annotations

from docs_site import coverage, freshness
from docs_site.choices import Freshness
from embedportal.schedules import Every

SCHEDULES = (Every("docs-freshness", "docs_site.tasks.check_documentation", 60),)


def record_checks() -> list[freshness.PageStatus]:
    """Check every page and the coverage and store the results (the schedule, the admin, the API)."""
    statuses = freshness.check_pages()
    freshness.record(statuses)
    coverage.record(coverage.measure())
    return statuses


def check_documentation() -> int:
    """The scheduled check; returns the number of stale pages."""
    return sum(1 for s in record_checks() if s.status == Freshness.STALE)
