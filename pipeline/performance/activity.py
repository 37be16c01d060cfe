"""Reading the pipeline history (pipeline.history.ROWS, batch rows not rolled up yet included): sums
over a window and series per step, for the SLOs, the capacity plan and the SLO page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection

from pipeline.history import FRESHNESS_SIZE, LATENCY_SIZE, ROWS, SEARCH_SIZE
from pipeline.models import RESERVED_PREFIXES


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


FROM = f"FROM {ROWS} a JOIN pipeline_collection c ON c.id = a.collection_id"
# The summed columns, in the order _totals reads them.
SUMMED = ["arrived", "embedded", "failed", "fresh"] + [
    f"{column}[{i}]"
    for column, size in (("latency", LATENCY_SIZE), ("freshness", FRESHNESS_SIZE), ("searches", SEARCH_SIZE))
    for i in range(1, size + 1)
]
SUMS = ", ".join(f"coalesce(sum({column}), 0)" for column in SUMMED)


def _totals(row: Sequence) -> Totals:
    arrived, embedded, failed, fresh, *rest = (int(v) for v in row)
    latency, freshness, searches = rest[:LATENCY_SIZE], rest[LATENCY_SIZE:-SEARCH_SIZE], rest[-SEARCH_SIZE:]
    return Totals(arrived, embedded, failed, latency, freshness, fresh=fresh, searches=searches)


def _scope(collection_id: int | None) -> tuple[str, list]:
    """User traffic: one collection, or every collection but the reserved scratch ones (operations
    tests, capacity measurements), whose bursts are not load the pipeline must carry."""
    if collection_id is not None:
        return "a.collection_id = %s", [collection_id]
    clauses = " AND ".join("c.name NOT LIKE %s" for _ in RESERVED_PREFIXES)
    return clauses, [p.replace("_", r"\_") + "%" for p in RESERVED_PREFIXES]


def totals(since: datetime, until: datetime, collection_id: int | None = None) -> Totals:
    """Sums of rows starting in [since, until). An hour row counts whole when it starts inside."""
    where, params = _scope(collection_id)
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT {SUMS} {FROM} WHERE a.start >= %s AND a.start < %s AND {where}",
            [since, until, *params],
        )
        return _totals(cur.fetchone())


@dataclass
class Point:
    start: datetime
    totals: Totals


def series(since: datetime, until: datetime, step_seconds: int, collection_id: int | None = None) -> list[Point]:
    """Totals per step from `since` (every step present, empty ones zero; queue depth: the sum over
    collections of each one's highest sample in the step, None without samples)."""
    where, params = _scope(collection_id)
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT floor(extract(epoch FROM a.start - %s) / %s)::int AS step, {SUMS} {FROM} "
            f"WHERE a.start >= %s AND a.start < %s AND {where} GROUP BY 1",
            [since, step_seconds, since, until, *params],
        )
        rows = {row[0]: row[1:] for row in cur.fetchall()}
    steps = int((until - since).total_seconds() // step_seconds)
    depth = _depth_series(since, until, step_seconds, collection_id)
    points = []
    for i in range(steps):
        t = _totals(rows[i]) if i in rows else Totals()
        t.queue_depth = depth.get(i)
        points.append(Point(since + timedelta(seconds=i * step_seconds), t))
    return points


def _depth_series(since: datetime, until: datetime, step_seconds: int, collection_id: int | None) -> dict[int, int]:
    where, params = _scope(collection_id)
    with connection.cursor() as cur:
        # Per collection its highest sample in the step, then summed over collections.
        cur.execute(
            f"""
            SELECT step, sum(depth)::bigint FROM (
                SELECT floor(extract(epoch FROM a.start - %s) / %s)::int AS step, a.collection_id,
                       max(a.queue_depth) AS depth
                  {FROM}
                 WHERE a.start >= %s AND a.start < %s AND a.queue_depth IS NOT NULL AND {where}
                 GROUP BY 1, 2
            ) per_collection GROUP BY step
            """,
            [since, step_seconds, since, until, *params],
        )
        return {step: int(depth) for step, depth in cur.fetchall()}


def first_start(collection_id: int | None = None) -> datetime | None:
    """When the history (of user traffic) begins."""
    where, params = _scope(collection_id)
    with connection.cursor() as cur:
        cur.execute(f"SELECT min(a.start) {FROM} WHERE {where}", params)
        return cur.fetchone()[0]
