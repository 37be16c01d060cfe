"""Per-stage percentiles of the ingest benchmarks, kept with a run as informational figures
(notes: docs/benchmarks.md, "Module notes")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pipeline.models import Collection
from pipeline.percentiles import db_percentiles

# Queue wait is left out: every document is enqueued before the drain, so it only measures the
# drain's length, which docs_per_second already states.
STAGES = ("claim", "chunking", "embedding", "storage", "total")
QUANTILES = ("p50", "p95", "p99")
# /metrics carries one quantile per stage: 5 more figure values per ingest benchmark, not 15.
EXPORTED_QUANTILE = "p95"
# Every row of the collection (a benchmark's collection is fresh: all its rows are its drain's).
ALL_TIME = datetime(1970, 1, 1, tzinfo=UTC)


def name(stage: str, quantile: str) -> str:
    return f"{stage}_{quantile}_s"


def percentiles(collection: Collection) -> dict[str, dict[str, float]]:
    """{stage: {"p50": s, "p95": s, "p99": s}} per document over the collection's batch timings."""
    found = db_percentiles(ALL_TIME, collection.pk)
    if not found["total"].count:
        raise RuntimeError(f"no batch timings for {collection.name}: its drain stored no documents")
    return {stage: {q: getattr(found[stage], q) for q in QUANTILES} for stage in STAGES}


def is_informational(data: dict[str, Any]) -> bool:
    return bool(data.get("informational"))
