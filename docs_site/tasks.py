"""django-q2 entry points: the hourly documentation check behind the admin status page and the
documentation gauges."""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS

from docs_site import coverage, freshness

SCHEDULES = (("docs-freshness", "docs_site.tasks.check_documentation", 60),)


def check_documentation() -> int:
    """Check every page and the coverage, store the results; returns the number of stale pages."""
    statuses = freshness.check_pages()
    freshness.record(statuses)
    coverage.record(coverage.measure())
    return sum(1 for s in statuses if s.status == "stale")


def ensure_schedules(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Register the documentation schedule (DocsSiteConfig.ready connects this to post_migrate)."""
    from pipeline.tasks import register_schedules

    return register_schedules(SCHEDULES, using)
