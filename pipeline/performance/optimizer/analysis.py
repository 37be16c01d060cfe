"""One analysis: the figures over a window, the bottleneck, per-collection figures, recommendations."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from pipeline.models import Collection, Document
from pipeline.percentiles import Percentiles, db_percentiles, rounded
from pipeline.performance.optimizer.figures import PROCESSING, Recommendation, bottleneck, db_busy
from pipeline.performance.optimizer.recommendations import recommend


@dataclass
class Analysis:
    source: str
    window_seconds: int
    stages: dict[str, Percentiles]
    utilisation: dict[str, float]
    workers: int
    documents: int
    bottleneck: dict[str, Any]
    recommendations: list[Recommendation] = field(default_factory=list)
    collections: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            **vars(self),
            "stages": {name: p.as_dict() for name, p in self.stages.items()},
            "recommendations": [r.as_dict() for r in self.recommendations],
            "utilisation": rounded(self.utilisation),
        }


# The longest history an analysis reads: a year covers any batch timing kept, and now - the window stays a
# date (a window of 10**17 seconds overflowed, a 500).
MAX_WINDOW_SECONDS = 366 * 86400


def window_problem(window: str | int) -> str | None:
    """Why `window` (seconds, as typed or as a number) is not a window an analysis can read; None if it is."""
    text = str(window)
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_WINDOW_SECONDS):
        return f"a whole number of seconds from 1 to {MAX_WINDOW_SECONDS} (366 days)"
    return None


def analyse(collection: Collection | None = None, window: int | None = None) -> Analysis:
    """The figures, the bottleneck and the recommendations, over the last `window` seconds."""
    window = window or settings.EMBEDPORTAL_OPTIMIZER_WINDOW_SECONDS
    since = timezone.now() - timedelta(seconds=window)
    scope = collection.pk if collection else None
    busy, stages = db_busy(since, scope), db_percentiles(since, scope)
    span = busy.span_seconds
    utilisation = {s: busy.stage_seconds[s] / span if span else 0.0 for s in PROCESSING}
    found = bottleneck(stages, utilisation, lambda: due(collection))
    analysis = Analysis("database", window, stages, utilisation, busy.workers, busy.documents, found)
    collections = [collection] if collection else list(Collection.objects.select_related("cost"))
    for c in collections:
        figures = collection_figures(c, since)
        if figures["documents"] or collection:
            analysis.collections[c.name] = figures
    analysis.recommendations = recommend(analysis, collections, since)
    return analysis


def due(collection: Collection | None) -> int:
    """Documents a worker could take now, of the collection or of every user collection."""
    documents = Document.objects.workable().due()
    if collection is not None:
        return documents.filter(collection=collection).count()
    return documents.filter(collection__in=Collection.objects.user_collections()).count()


def collection_figures(c: Collection, since: datetime) -> dict[str, Any]:
    stages, busy = db_percentiles(since, c.pk), db_busy(since, c.pk)
    cost = getattr(c, "cost", None)
    seconds = sum(busy.stage_seconds.values())
    return {
        "documents": busy.documents,
        "batches": busy.batches,
        "stages": {s: p.as_dict() for s, p in stages.items()},
        "bottleneck": bottleneck(
            stages, {s: v / seconds if seconds else 0.0 for s, v in busy.stage_seconds.items()}, lambda: due(c)
        ),
        "worker_seconds_per_document": round(seconds / busy.documents, 6) if busy.documents else None,
        "batch_size": c.batch_size,
        "model": c.model,
        "cost_usd": round(cost.cost_usd, 8) if cost else 0.0,
        "cost_per_document_usd": cost.per_document if cost else None,
    }
