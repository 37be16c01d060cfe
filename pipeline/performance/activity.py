"""Reading the pipeline history (pipeline.history.ROWS, batch rows not rolled up yet included): sums
over a window and series per step, for the SLOs, the capacity plan and the SLO page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection

from pipeline.history import FRESHNESS_SIZE, LATENCY_SIZE, ROWS, SEARCH_SIZE
from pipeline.models import Collection


@dataclass
class Totals:
    """Sums over some rows of the history."""

    arrived: int = 0
    embedded: int = 0
    failed: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * LATENCY_SIZE)
    freshness: list[int] = field(default_factory=lambda: [0] * FRESHNESS_SIZE)
    queue_depth: int | None = None
    fresh: int = 0  # documents embedded within their collection's freshness SLA
    searches: list[int] = field(default_factory=lambda: [0] * SEARCH_SIZE)  # on the search histogram's bounds


# Its parameter: the collections of _scope.
FROM = f"FROM {ROWS} a WHERE a.collection_id = ANY(%s)"
# The summed columns, in the order _totals reads them.
SUMMED = ["arrived", "embedded", "failed", "fresh"] + [
    f"{column}[{i}]"
    for column, size in (("latency", LATENCY_SIZE), ("freshness", FRESHNESS_SIZE), ("searches", SEARCH_SIZE))
    for i in range(1, size + 1)
]
SUMS = ", ".join(f"coalesce(sum({column}), 0) AS s{i}" for i, column in enumerate(SUMMED))


def _totals(row: Sequence, queue_depth: int | None) -> Totals:
    arrived, embedded, failed, fresh, *rest = (int(v) for v in row)
    latency, freshness, searches = rest[:LATENCY_SIZE], rest[LATENCY_SIZE:-SEARCH_SIZE], rest[-SEARCH_SIZE:]
    return Totals(arrived, embedded, failed, latency, freshness, queue_depth, fresh, searches)


def _scope(collection_id: int | None) -> list[int]:
    """One collection, or the user ones: the reserved scratch ones' bursts are no load to carry."""
    if collection_id is not None:
        return [collection_id]
    return list(Collection.objects.user_collections().values_list("pk", flat=True))


def totals(since: datetime, until: datetime, collection_id: int | None = None) -> Totals:
    """Sums of rows starting in [since, until). An hour row counts whole when it starts inside."""
    return series(since, until, (until - since).total_seconds(), collection_id)[0].totals


@dataclass
class Point:
    start: datetime
    totals: Totals


def series(since: datetime, until: datetime, step_seconds: float, collection_id: int | None = None) -> list[Point]:
    """Totals per step from `since` (every step present, empty ones zero; queue depth: the sum over
    collections of each one's highest sample in the step, None without samples)."""
    outer = ", ".join(f"sum(s{i})" for i in range(len(SUMMED)))
    with connection.cursor() as cur:
        # Per step and collection first, for each collection's highest queue depth sample.
        cur.execute(
            f"""
            SELECT step, {outer}, sum(depth)::bigint FROM (
                SELECT floor(extract(epoch FROM a.start - %s) / %s)::int AS step, {SUMS}, max(a.queue_depth) AS depth
                  {FROM} AND a.start >= %s AND a.start < %s
                 GROUP BY 1, a.collection_id
            ) per_collection GROUP BY step
            """,
            [since, step_seconds, _scope(collection_id), since, until],
        )
        found = {step: _totals(sums, depth) for step, *sums, depth in cur.fetchall()}
    steps = int((until - since).total_seconds() // step_seconds)
    return [Point(since + timedelta(seconds=i * step_seconds), found.get(i, Totals())) for i in range(steps)]


def first_start() -> datetime | None:
    """When the history of user traffic begins."""
    with connection.cursor() as cur:
        cur.execute(f"SELECT min(a.start) {FROM}", [_scope(None)])
        return cur.fetchone()[0]
