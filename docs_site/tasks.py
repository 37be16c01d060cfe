"""django-q2 entry points: the hourly documentation check behind the admin status page and the
documentation gauges."""

from __future__ import annotations

from docs_site import coverage, freshness
from embedportal.schedules import Every

SCHEDULES = (Every("docs-freshness", "docs_site.tasks.check_documentation", 60),)


def check_documentation() -> int:
    """Check every page and the coverage, store the results; returns the number of stale pages."""
    statuses = freshness.check_pages()
    freshness.record(statuses)
    coverage.record(coverage.measure())
    return sum(1 for s in statuses if s.status == "stale")
