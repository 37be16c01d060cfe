"""Applying a recommendation and judging it: each kind of change (KINDS) says how it is applied and what
measures it (docs/performance.md). A change is kept when its measure fell by at least MIN_GAIN, else
reverted (unless someone changed the setting since); one change per collection is measured at a time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import JSONField, Value
from django.utils import timezone

from pipeline import backfill, quality, storage
from pipeline.choices import OptimizationStatus
from pipeline.models import BatchTiming, Collection, OptimizationChange, SearchLatency
from pipeline.performance.optimizer.figures import OptimizerError, Recommendation, nearest_rank

# A change is kept when its measure (worker seconds per document, or search p95) falls by at least this much.
MIN_GAIN = 0.02


def measurement(collection: Collection, before: datetime | None = None, after: datetime | None = None) -> dict:
    """The collection's last EMBEDPORTAL_OPTIMIZER_EVALUATE_BATCHES batches before `before`, or its first ones
    after `after`: worker seconds per document and p95."""
    rows = BatchTiming.objects.filter(collection=collection)
    if before is not None:
        rows = rows.filter(finished_at__lt=before).order_by("-finished_at")
    else:
        rows = rows.filter(finished_at__gt=after).order_by("finished_at")
    fields = ("documents", "claim_seconds", "total_seconds")
    batches = list(rows.values(*fields)[: settings.EMBEDPORTAL_OPTIMIZER_EVALUATE_BATCHES])
    documents = sum(b["documents"] for b in batches)
    seconds = sum(b["claim_seconds"] + b["total_seconds"] for b in batches)
    p95 = nearest_rank([t for b in batches for t in [b["total_seconds"]] * b["documents"]], 0.95)
    return {
        "batches": len(batches),
        "documents": documents,
        "worker_seconds_per_document": round(seconds / documents, 6) if documents else None,
        "p95_total_seconds": None if p95 is None else round(p95, 6),
    }


def search_measurement(recent: list[float], searches: int) -> dict[str, Any]:
    p50, p95 = nearest_rank(recent, 0.5), nearest_rank(recent, 0.95)
    return {
        "searches": len(recent),
        "searches_total": searches,
        "p50_search_seconds": None if p50 is None else round(p50, 6),
        "p95_search_seconds": None if p95 is None else round(p95, 6),
    }


def _json(value: Any) -> Any:
    """None as JSON null: Django stores a bare None in a JSONField as SQL NULL (ef_search unset)."""
    return Value(None, JSONField()) if value is None else value


@contextmanager
def _one_at_a_time(collection: Collection) -> Iterator[None]:
    try:
        yield
    except IntegrityError as exc:
        if "pipeline_optimizationchange_one_pending" not in str(exc):
            raise
        raise OptimizerError(f"a change of {collection.name!r} is already being measured") from None


class Kind:
    """A plain Collection field (batch_size), judged by worker seconds per document."""

    measure = "worker_seconds_per_document"
    unit = "worker seconds per document"
    # How the verdict comes, for whoever applied it.
    verdict = "kept if the next batches take fewer worker seconds per document, else reverted"
    # Extra conditions of the apply's compare-and-swap, and what its failing may also mean.
    guard: dict[str, Any] = {}
    guarded = ""

    def __init__(self, setting: str) -> None:
        self.setting = setting

    def fields(self, value: Any) -> dict[str, Any]:
        return {self.setting: value}

    def shown(self, value: Any) -> str:
        return str(value)

    def swap(self, collection_id: int, old: Any, new: Any, **guard: Any) -> bool:
        rows = Collection.objects.filter(pk=collection_id, **self.fields(old), **guard)
        return bool(rows.update(**self.fields(new), updated_at=timezone.now()))

    def before(self, collection: Collection) -> dict[str, Any]:
        before = measurement(collection, before=timezone.now())
        if not before["documents"]:
            raise OptimizerError(f"collection {collection.name!r} has no batch timings to compare a change against")
        return before

    def after(self, change: OptimizationChange) -> dict[str, Any] | None:
        """The measurement after the change, or None while it is incomplete."""
        after = measurement(change.collection, after=change.applied_at)
        return after if after["batches"] >= settings.EMBEDPORTAL_OPTIMIZER_EVALUATE_BATCHES else None

    def apply(self, collection: Collection, rec: Recommendation, applied_by: str) -> OptimizationChange:
        """Change the setting (CAS on its current value) and record it with the measurement before it."""
        before = self.before(collection)
        with _one_at_a_time(collection), transaction.atomic():
            if not self.swap(collection.pk, rec.current, rec.proposed, **self.guard):
                was = self.shown(rec.current)
                raise OptimizerError(
                    f"{rec.setting} of {collection.name!r} is no longer {was}; analyse again{self.guarded}"
                )
            return self.record(collection, rec, before, applied_by)

    def record(
        self, collection: Collection, rec: Recommendation, before: dict[str, Any], applied_by: str
    ) -> OptimizationChange:
        change = OptimizationChange.objects.create(
            collection=collection,
            setting=rec.setting,
            before=_json(rec.current),
            after=_json(rec.proposed),
            reason=f"{rec.title}: {rec.expected_effect}",
            measurement_before=before,
            applied_by=applied_by,
            applied_at=timezone.now(),
        )
        change.refresh_from_db(fields=["before", "after"])  # the values, not the expressions
        return change

    def revert(self, change: OptimizationChange) -> str:
        """Set it back (in the verdict's transaction); returns what the note adds."""
        if not self.swap(change.collection_id, change.after, change.before):
            return f"; {change.setting} was changed by someone else since: left as it is"
        return f"; set back to {self.shown(change.before)}"


class HnswBuild(Kind):
    """m and ef_construction: the index is rebuilt with them, and rebuilt again on a revert."""

    # The index of a collection being backfilled is built by the backfill (with the fields).
    guard = {"building_generation__isnull": True}
    guarded = " (or a backfill writes it: its index is built at the end)"
    verdict = (
        "the index was rebuilt with them; kept if the next batches take fewer worker seconds per document, "
        "else reverted (rebuilt again)"
    )

    def fields(self, value: dict[str, int]) -> dict[str, Any]:
        return {"hnsw_m": value["m"], "hnsw_ef_construction": value["ef_construction"]}

    def shown(self, value: dict[str, int]) -> str:
        return f"m={value['m']}, ef_construction={value['ef_construction']}"

    def apply(self, collection: Collection, rec: Recommendation, applied_by: str) -> OptimizationChange:
        if connection.in_atomic_block:
            raise OptimizerError("an index rebuild runs outside a transaction (CREATE INDEX CONCURRENTLY)")
        # Held from before the compare-and-swap: a change is recorded only when its rebuild can start.
        with backfill.build_lock() as held:
            if not held:
                raise OptimizerError("another index build is running (a backfill's or a rebuild); apply again later")
            change = super().apply(collection, rec, applied_by)
            try:
                rebuilt, why = backfill.rebuild_index(collection.pk), "a backfill or an edit came first"
            except DatabaseError as exc:
                rebuilt, why = False, str(exc).splitlines()[0]
            if not rebuilt:
                self.swap(collection.pk, rec.proposed, rec.current)
                note = f"the index was not rebuilt ({why}): parameters set back to {self.shown(rec.current)}"
                OptimizationChange.objects.filter(pk=change.pk).conclude(OptimizationStatus.REVERTED, {}, note)
                raise OptimizerError(f"{collection.name!r}: {note}")
        change.refresh_from_db()  # applied_at: when the new index served
        return change

    def after(self, change: OptimizationChange) -> dict[str, Any] | None:
        collection = Collection.objects.get(pk=change.collection_id)
        wanted = {"m": collection.hnsw_m, "ef_construction": collection.hnsw_ef_construction}
        if wanted == change.after and storage.index_options(collection.index_name) != change.after:
            return None  # the rebuild died before its swap: an idle worker redoes it
        return super().after(change)

    def revert(self, change: OptimizationChange) -> str:
        note = super().revert(change)
        if note.startswith("; set back"):
            # After the verdict commits; an idle worker does it if another build holds the lock.
            transaction.on_commit(backfill.rebuild_stale, robust=True)
            note += ", and the index rebuilt with them"
        return note


class EfSearch(Kind):
    """ef_search: judged by the p95 of the collection's searches, not by its batches."""

    measure = "p95_search_seconds"
    unit = "search p95 seconds"
    verdict = "kept if the next searches of the collection have a lower p95, else reverted"

    def shown(self, value: int | None) -> str:
        return "unset (max(40, 2k))" if value is None else str(value)

    def before(self, collection: Collection) -> dict[str, Any]:
        row = SearchLatency.objects.filter(collection=collection).first()
        if row is None or not row.recent:
            raise OptimizerError(f"collection {collection.name!r} has no search timings to compare a change against")
        return search_measurement(row.recent, row.searches)

    def after(self, change: OptimizationChange) -> dict[str, Any] | None:
        n = settings.EMBEDPORTAL_OPTIMIZER_EVALUATE_SEARCHES
        row = SearchLatency.objects.filter(collection_id=change.collection_id).first()
        if row is None or row.searches - change.measurement_before["searches_total"] < n:
            return None
        return search_measurement(row.recent[-n:], row.searches)


class Backfill(Kind):
    """Backfill mode for the queued documents: applied by starting it, never undone."""

    verdict = (
        "the index is built once its queued documents are written; then judged by the worker seconds per "
        "document of the load (nothing is undone either way)"
    )

    def apply(self, collection: Collection, rec: Recommendation, applied_by: str) -> OptimizationChange:
        before = {**self.before(collection), "generation": collection.generation}
        with _one_at_a_time(collection), transaction.atomic():
            if not backfill.begin_backfill(collection.pk):
                raise OptimizerError(f"{collection.name!r} is already being backfilled")
            return self.record(collection, rec, before, applied_by)

    def after(self, change: OptimizationChange) -> dict[str, Any] | None:
        loading = Collection.objects.filter(
            pk=change.collection_id, building_generation=change.measurement_before["generation"]
        ).exists()
        if loading:
            return None  # judged once its index is built
        after = measurement(change.collection, after=change.applied_at)
        # A load of fewer batches than usual is judged on all of them.
        return after if after["batches"] else None

    def revert(self, change: OptimizationChange) -> str:
        return "; nothing to undo: the backfill built its index once at the end, as a load with the index would have"


KINDS: dict[str, Kind] = {
    "batch_size": Kind("batch_size"),
    "provider_concurrency": Kind("provider_concurrency"),
    "hnsw": HnswBuild("hnsw"),
    "ef_search": EfSearch("ef_search"),
    "backfill": Backfill("backfill"),
}


def apply(collection: Collection, rec: Recommendation, applied_by: str = "") -> OptimizationChange:
    """Apply the recommendation (its kind says how) and record it with the measurement before it."""
    if rec.collection != collection.name or rec.setting not in KINDS:
        raise OptimizerError(f"recommendation {rec.id!r} changes no setting of collection {collection.name!r}")
    # ef_search changes what search finds: evaluated on the golden queries before and after (pipeline.quality).
    before = quality.before_change(collection) if rec.setting in quality.SEARCH_FIELDS else None
    change = KINDS[rec.setting].apply(collection, rec, applied_by)
    if before is not None:
        collection.refresh_from_db()
        quality.evaluate(collection, trigger="optimizer", before=before)
    return change


@dataclass
class Evaluated:
    change: int
    status: str
    note: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(change: OptimizationChange) -> Evaluated | None:
    """Keep or revert one applied change once its measurement after it is complete."""
    kind = KINDS[change.setting]
    if (after := kind.after(change)) is None:
        return None
    old, new = change.measurement_before[kind.measure], after[kind.measure]
    gain = 1 - new / old if old else 0.0
    helped = gain >= MIN_GAIN
    status = OptimizationStatus.KEPT if helped else OptimizationStatus.REVERTED
    note = f"{kind.unit} {old:.4f} -> {new:.4f} ({gain:+.1%}; kept from {MIN_GAIN:.0%})"
    with transaction.atomic():
        if not OptimizationChange.objects.filter(pk=change.pk).conclude(status, after, note):
            return None  # another evaluator concluded it first
        if not helped:
            note += kind.revert(change)
            OptimizationChange.objects.filter(pk=change.pk).update(note=note)
    return Evaluated(change.pk, status, note)


def evaluate_pending() -> list[Evaluated]:
    pending = OptimizationChange.objects.pending().select_related("collection")
    return [result for change in pending if (result := evaluate(change)) is not None]
