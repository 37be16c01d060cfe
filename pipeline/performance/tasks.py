"""django-q2 entry points of the performance layer (scheduled by pipeline.tasks.SCHEDULES)."""

from __future__ import annotations

from pipeline.performance import optimizer


def evaluate_optimizations() -> dict:
    """Every five minutes: keep or revert applied optimizer changes whose measurement is complete."""
    return {"evaluated": [c.as_dict() for c in optimizer.evaluate_pending()]}
