"""Per-document stage percentiles from the batch rows (BatchTiming), for every admin and API surface
(Grafana reads Prometheus), and search figures from the latest search times (SearchLatency)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from django.db import connection

STAGES = ("queue_wait", "claim", "chunking", "embedding", "storage", "total")
QUANTILES = (0.5, 0.95, 0.99)


@dataclass
class Percentiles:
    p50: float | None
    p95: float | None
    p99: float | None
    count: int

    def as_dict(self) -> dict[str, Any]:
        return rounded(asdict(self))


def rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in values.items()}


# Per-document percentiles of every stage's column of BatchTiming, in STAGES order.
PERCENTILES_SQL = ", ".join(
    f"percentile_cont(ARRAY[{','.join(map(str, QUANTILES))}]) WITHIN GROUP (ORDER BY t.{stage}_seconds)"
    for stage in STAGES
)


def window_where(since: datetime, collection_id: int | None) -> tuple[str, list[Any]]:
    if collection_id is None:
        return "t.finished_at >= %s", [since]
    return "t.finished_at >= %s AND t.collection_id = %s", [since, collection_id]


def db_percentiles(since: datetime, collection_id: int | None = None) -> dict[str, Percentiles]:
    """Per-document percentiles: each batch row counts once per document it stored."""
    where, params = window_where(since, collection_id)
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT count(*), {PERCENTILES_SQL} FROM pipeline_batchtiming t "
            f"CROSS JOIN LATERAL generate_series(1, t.documents) WHERE {where}",
            params,
        )
        count, *rows = cur.fetchone()
    return {
        stage: Percentiles(*(row or (None, None, None)), count=int(count))
        for stage, row in zip(STAGES, rows, strict=True)
    }


def searches() -> tuple[int, float | None]:
    """(count, p95 seconds) of every collection's latest searches."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*), percentile_cont(0.95) WITHIN GROUP (ORDER BY s) "
            "FROM pipeline_searchlatency, unnest(recent) s"
        )
        return cur.fetchone()
