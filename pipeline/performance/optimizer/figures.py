"""The optimizer's figures: per-document percentiles of each stage and each stage's utilisation,
from the batch rows every worker of the cluster writes (pipeline.recording)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection

from pipeline.models import Collection
from pipeline.percentiles import PERCENTILES_SQL, QUANTILES, STAGES, Percentiles, window_where

PROCESSING = ("claim", "chunking", "embedding", "storage")
# Workers busy this share of the time have no slack: more work waits in the queue.
SATURATED = 0.8


class OptimizerError(Exception):
    """A request the optimizer cannot carry out; the message says why."""


@dataclass
class Busy:
    """Worker time from the batch rows: each worker's span (first claim to last store) is its time;
    `workers`, how many ran at once on average."""

    stage_seconds: dict[str, float]
    span_seconds: float
    workers: int
    documents: int
    batches: int


def db_busy(since: datetime, collection_id: int | None = None) -> Busy:
    where, params = window_where(since, collection_id)
    with connection.cursor() as cur:
        cur.execute(
            f"""
            SELECT extract(epoch FROM max(finished_at) - min(finished_at))
                       + (array_agg(claim_seconds + total_seconds ORDER BY finished_at))[1],
                   coalesce(sum(documents), 0), count(*),
                   coalesce(sum(claim_seconds), 0), coalesce(sum(chunking_seconds), 0),
                   coalesce(sum(embedding_seconds), 0), coalesce(sum(storage_seconds), 0),
                   coalesce((SELECT sum(span) FROM (
                       SELECT extract(epoch FROM max(t.finished_at) - min(t.finished_at))
                              + (array_agg(t.claim_seconds + t.total_seconds ORDER BY t.finished_at))[1] AS span
                         FROM pipeline_batchtiming t WHERE {where} GROUP BY t.worker) spans), 0)
              FROM pipeline_batchtiming t WHERE {where}
            """,
            params + params,
        )
        whole, documents, batches, *stage_sums, span = cur.fetchone()
    # Workers at once: their spans over the window's. Not the worker ids seen: a restarted worker has a new
    # one, and an hour with two workers restarted twice counted six.
    workers = max(1, round(float(span) / float(whole))) if whole else 0
    return Busy(
        dict(zip(PROCESSING, map(float, stage_sums), strict=True)), float(span), workers, int(documents), batches
    )


def bottleneck(
    stages: dict[str, Percentiles], utilisation: dict[str, float], due: Callable[[], int] | None = None
) -> dict[str, Any]:
    """The stage that dominates a document's processing, or "workers" when they are saturated and
    documents wait longer than they take. `due` counts the documents a worker could take now (asked
    only of a saturated window: a query per collection on every analysis otherwise)."""
    p95 = {s: stages[s].p95 or 0.0 for s in PROCESSING}
    p99 = {s: stages[s].p99 or 0.0 for s in PROCESSING}
    if not sum(p95.values()):
        return {"stage": None, "reason": "no documents were processed in the window"}
    shares95 = {s: v / sum(p95.values()) for s, v in p95.items()}
    shares99 = {s: v / sum(p99.values()) if sum(p99.values()) else 0.0 for s, v in p99.items()}
    stage = max(PROCESSING, key=lambda s: (shares95[s], shares99[s]))
    # Stages add up past 1 only when they ran at once: storage on its own thread while the worker
    # claims, chunks and embeds the next batch (pipeline.StorageStage). Such a worker is as busy as
    # a worker can be, not more.
    busy = min(1.0, sum(utilisation.values()))
    wait, total = stages["queue_wait"].p95 or 0.0, stages["total"].p95 or 0.0
    out = {
        "stage": stage,
        "share_p95": round(shares95[stage], 4),
        "share_p99": round(shares99[stage], 4),
        "utilisation": round(utilisation.get(stage, 0.0), 4),
        "workers_busy": round(busy, 4),
        "reason": f"{stage} is {shares95[stage]:.0%} of the per-document p95 and takes "
        f"{utilisation.get(stage, 0.0):.0%} of the workers' time",
    }
    if busy >= SATURATED and wait > total:
        if due is not None and (waiting := due()) < settings.EMBEDPORTAL_CLAIM_BATCH:
            # The wait was a backlog the workers have since drained: one an outage, a pause or a first
            # load left. Too few workers leave documents waiting; judged on the wait alone, every
            # recovery from an outage advised more workers.
            out["reason"] = (
                f"documents waited {wait:.2f} s (p95) for busy workers, but none waits now beyond one claim "
                f"({waiting} due): a backlog drained, not too few workers; " + out["reason"]
            )
            return out
        out |= {
            "stage": "workers",
            "batch_stage": stage,
            "reason": f"workers are busy {busy:.0%} of the time and documents wait {wait:.2f} s (p95) in the "
            f"queue against {total:.2f} s of processing: the pipeline needs capacity; within a batch, " + out["reason"],
        }
    return out


# A batch row's step: rows are grouped by it in db_trend and slos.evaluate.
STEP_SQL = "floor(extract(epoch FROM t.finished_at - %s) / %s)::int"


def db_trend(since: datetime, until: datetime, steps: int, collection_id: int | None = None) -> dict[str, Any]:
    """The admin page's trend charts: per-document percentiles of every stage (None in a step without
    batches) and the documents stored, in `steps` equal steps."""
    where, params = window_where(since, collection_id)
    step = max(1.0, (until - since).total_seconds() / steps)
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT {STEP_SQL} AS step, count(*), {PERCENTILES_SQL} "
            f"FROM pipeline_batchtiming t CROSS JOIN LATERAL generate_series(1, t.documents) "
            f"WHERE {where} AND t.finished_at < %s GROUP BY 1",
            [since, step, *params, until],
        )
        rows = {row[0]: row[1:] for row in cur.fetchall()}
    names = [f"p{round(q * 100)}" for q in QUANTILES]
    out: dict[str, Any] = {
        "labels": [(since + timedelta(seconds=i * step)).isoformat(timespec="minutes") for i in range(steps)],
        "step_seconds": round(step, 3),
        "documents": [],
        "docs_per_second": [],
        **{name: {stage: [] for stage in STAGES} for name in names},
    }
    for i in range(steps):
        documents, *per_stage = rows.get(i, [0, *[None] * len(STAGES)])
        out["documents"].append(documents)
        out["docs_per_second"].append(round(documents / step, 6))
        for stage, values in zip(STAGES, per_stage, strict=True):
            for name, value in zip(names, values or [None] * len(names), strict=True):
                out[name][stage].append(None if value is None else round(value, 6))
    return out


# Said by every recommendation the optimizer cannot apply.
ADVICE_ONLY = "a deployment setting: change it where the deployment is configured; the optimizer does not"


def nearest_rank(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else None


@dataclass
class Recommendation:
    id: str
    title: str
    expected_effect: str
    reason: str
    collection: str | None = None
    setting: str | None = None
    current: Any = None
    proposed: Any = None

    @property
    def appliable(self) -> bool:
        """A collection's recommendation (change_of) changes one of its changes.KINDS; others are advice."""
        return self.collection is not None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "appliable": self.appliable}


def change_of(c: Collection, setting: str, proposed: Any, current: Any = None, **text: str) -> Recommendation:
    """A recommendation to change `setting` of `c`, one of changes.KINDS (`current`: the field of that
    name unless given); `text`: id, title, expected_effect, reason."""
    current = getattr(c, setting) if current is None else current
    return Recommendation(**text, collection=c.name, setting=setting, current=current, proposed=proposed)


def stage_share(figures: dict[str, Any], stage: str) -> float:
    """The stage's share of the per-document p95 if it is the largest one within a batch (also when
    the workers as a whole are the bottleneck: a faster stage is more capacity)."""
    bottleneck = figures["bottleneck"]
    largest = bottleneck.get("batch_stage", bottleneck.get("stage"))
    return bottleneck.get("share_p95", 0.0) if largest == stage else 0.0
