"""Applying a recommendation and judging it: the change is recorded with the worker seconds per
document of the batches before it, and kept or reverted once as many batches ran after it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from pipeline.choices import OptimizationStatus
from pipeline.models import BatchTiming, Collection, OptimizationChange
from pipeline.optimizer.figures import OptimizerError
from pipeline.optimizer.recommendations import Recommendation

# A change is kept when the worker seconds per document fall by at least this much.
MIN_GAIN = 0.02


def measurement(collection: Collection, batches: list[dict[str, Any]]) -> dict[str, Any]:
    documents = sum(b["documents"] for b in batches)
    seconds = sum(b["claim_seconds"] + b["total_seconds"] for b in batches)
    totals = sorted(t for b in batches for t in [b["total_seconds"]] * b["documents"])
    return {
        "batches": len(batches),
        "documents": documents,
        "worker_seconds_per_document": round(seconds / documents, 6) if documents else None,
        "p95_total_seconds": round(totals[min(len(totals) - 1, math.ceil(0.95 * len(totals)) - 1)], 6)
        if totals
        else None,
    }


def _batches(collection: Collection, before: datetime | None = None, after: datetime | None = None) -> list[dict]:
    rows = BatchTiming.objects.filter(collection=collection)
    n = settings.EMBEDPORTAL_OPTIMIZER_EVALUATE_BATCHES
    fields = ("documents", "claim_seconds", "total_seconds")
    if before is not None:
        return list(rows.filter(finished_at__lt=before).order_by("-finished_at").values(*fields)[:n])
    return list(rows.filter(finished_at__gt=after).order_by("finished_at").values(*fields)[:n])


def apply(collection: Collection, rec: Recommendation, applied_by: str = "") -> OptimizationChange:
    """Change the setting (CAS on its current value) and record the change with the measurement before it."""
    if not rec.appliable or rec.collection != collection.name:
        raise OptimizerError(f"recommendation {rec.id!r} changes no setting of collection {collection.name!r}")
    before = measurement(collection, _batches(collection, before=timezone.now()))
    if not before["documents"]:
        raise OptimizerError(f"collection {collection.name!r} has no batch timings to compare a change against")
    try:
        with transaction.atomic():
            changed = Collection.objects.filter(pk=collection.pk, **{rec.setting: rec.current}).update(
                **{rec.setting: rec.proposed}, updated_at=timezone.now()
            )
            if not changed:
                raise OptimizerError(f"{rec.setting} of {collection.name!r} is no longer {rec.current}; analyse again")
            return OptimizationChange.objects.create(
                collection=collection,
                setting=rec.setting,
                before=rec.current,
                after=rec.proposed,
                reason=f"{rec.title}: {rec.expected_effect}",
                measurement_before=before,
                applied_by=applied_by,
                applied_at=timezone.now(),
            )
    except IntegrityError:
        raise OptimizerError(f"a change of {collection.name!r} is already being measured") from None


@dataclass
class Evaluated:
    change: int
    status: str
    note: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(change: OptimizationChange) -> Evaluated | None:
    """Keep or revert one applied change once EMBEDPORTAL_OPTIMIZER_EVALUATE_BATCHES ran after it."""
    after = measurement(change.collection, _batches(change.collection, after=change.applied_at))
    if after["batches"] < settings.EMBEDPORTAL_OPTIMIZER_EVALUATE_BATCHES:
        return None
    old = change.measurement_before["worker_seconds_per_document"]
    new = after["worker_seconds_per_document"]
    gain = 1 - new / old if old else 0.0
    helped = gain >= MIN_GAIN
    status = OptimizationStatus.KEPT if helped else OptimizationStatus.REVERTED
    note = f"worker seconds per document {old:.4f} -> {new:.4f} ({gain:+.1%}; kept from {MIN_GAIN:.0%})"
    with transaction.atomic():
        if not OptimizationChange.objects.filter(pk=change.pk).conclude(status, after, note):
            return None  # another evaluator concluded it first
        if not helped:
            reverted = Collection.objects.filter(pk=change.collection_id, **{change.setting: change.after}).update(
                **{change.setting: change.before}, updated_at=timezone.now()
            )
            if not reverted:
                note += f"; {change.setting} was changed by someone else since: left as it is"
                OptimizationChange.objects.filter(pk=change.pk).update(note=note)
    return Evaluated(change.pk, status, note)


def evaluate_pending() -> list[Evaluated]:
    done = []
    for change in OptimizationChange.objects.pending().select_related("collection"):
        if (result := evaluate(change)) is not None:
            done.append(result)
    return done
