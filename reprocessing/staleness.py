"""Freshness: a document is stale when its source changed after its last embedding (or it
was never embedded) and its collection's freshness SLA has passed since that change."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count, DateTimeField, Exists, ExpressionWrapper, F, OuterRef, Q, Value
from django.db.models.functions import Coalesce, Greatest
from django.db.models.lookups import GreaterThan, LessThan
from django.utils import timezone

from pipeline.choices import DocumentStatus
from pipeline.models import Collection, Document
from reprocessing import metrics
from reprocessing.choices import ReprocessReason
from reprocessing.models import FailedDocument

# Documents requeued per UPDATE, so a large backlog is not one long transaction.
REQUEUE_BATCH = 1000


def stale_condition(now: datetime, path: str = "") -> Q:
    """The staleness predicate on Document fields, reached through `path` (e.g. "documents__")."""
    collection = "" if path else "collection__"  # a Collection query reaches documents through `path`
    sla, collection_created = F(f"{collection}freshness_sla"), F(f"{collection}created_at")
    modified = F(f"{path}source_modified_at")
    # When the SLA clock started: the source change, or arrival for sources without a time; never before
    # the collection existed (a first load of older content is not stale on arrival: pipeline.batches).
    started = Greatest(Coalesce(modified, F(f"{path}created_at")), collection_created)
    deadline = ExpressionWrapper(started + sla, output_field=DateTimeField())
    changed = Q(**{f"{path}last_embedded_at__isnull": True}) | Q(GreaterThan(modified, F(f"{path}last_embedded_at")))
    return changed & Q(LessThan(deadline, Value(now, output_field=DateTimeField())))


def stale_documents(now: datetime | None = None) -> Any:
    return Document.objects.filter(stale_condition(now or timezone.now()))


def stale_counts(now: datetime | None = None) -> dict[str, int]:
    """Stale documents per collection name, zeros included (so alerts can tell 0 from no data)."""
    rows = Collection.objects.order_by().annotate(
        stale=Count("documents", filter=stale_condition(now or timezone.now(), "documents__"))
    )
    return dict(rows.values_list("name", "stale"))


@dataclass
class StaleReport:
    stale: dict[str, int] = field(default_factory=dict)
    requeued: int = 0
    dry_run: bool = False

    @property
    def total(self) -> int:
        return sum(self.stale.values())

    def as_dict(self) -> dict:
        return {"stale": self.stale, "total": self.total, "requeued": self.requeued, "dry_run": self.dry_run}


def requeue_candidates(now: datetime) -> Any:
    """Stale documents nobody else will bring back: embedded ones, and failed ones without an unresolved
    failure (those belong to the ReprocessingWorkflow's backoff); pending and processing ones are queued."""
    return (
        stale_documents(now)
        .alias(has_failure=Exists(FailedDocument.objects.unresolved().filter(document=OuterRef("pk"))))
        .filter(Q(status=DocumentStatus.EMBEDDED) | Q(status=DocumentStatus.FAILED, has_failure=False))
    )


@metrics.timed_pass(metrics.STALENESS_PASS)
def detect_stale(dry_run: bool = False) -> StaleReport:
    """Count stale documents per collection and requeue those nobody else will (reason `stale`)."""
    now = timezone.now()
    report = StaleReport(stale=stale_counts(now), dry_run=dry_run)
    candidates = requeue_candidates(now)
    if dry_run:
        report.requeued = candidates.count()
        return report
    while ids := list(candidates.values_list("pk", flat=True)[:REQUEUE_BATCH]):
        # requeue() is a CAS on embedded/failed: documents a worker or producer took meanwhile are skipped.
        n = Document.objects.filter(pk__in=ids).requeue()
        report.requeued += n
        if n == 0:
            break
    metrics.count_requeued(ReprocessReason.STALE.value, report.requeued)
    return report
