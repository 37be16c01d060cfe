"""The admin's performance console: the Performance page (the optimizer's figures, recommendations,
SLOs and trends), applied changes, batch timings, and each collection's cost."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from audit import trail
from embedportal.admin import ReadOnlyAdmin
from pipeline import costs
from pipeline.access import TeamCollectionFilter, TeamScoped
from pipeline.admin_state import holds
from pipeline.models import BatchTiming, Collection, OptimizationChange
from pipeline.performance import capacity, slos
from pipeline.performance.api import performance
from pipeline.performance.optimizer import EmbeddingPipelineOperationsOptimizer, OptimizerError, evaluate
from pipeline.performance.optimizer.changes import KINDS
from pipeline.performance.optimizer.figures import db_trend

TREND_STEPS = 24


def format_cost(collection: Collection) -> str:
    """The total since the collection was created, and this month's spend against its budget."""
    parts = []
    if (cost := getattr(collection, "cost", None)) is not None:  # none until a batch of it is priced
        per_document = f" (${cost.per_document:.8f}/doc)" if cost.per_document is not None else ""
        parts.append(f"${cost.cost_usd:.6f}{per_document}")
    if (spend := costs.spend_of(collection.pk)) is not None:
        parts.append(spend.as_text())
    return "; ".join(parts) or "-"


@admin.register(BatchTiming)
class BatchTimingAdmin(TeamScoped, ReadOnlyAdmin):
    list_display = (
        "finished_at",
        "collection",
        "worker",
        "documents",
        "chunks",
        "claim_seconds",
        "chunking_seconds",
        "embedding_seconds",
        "storage_seconds",
        "total_seconds",
        "queue_wait_seconds",
        "cost_usd",
    )
    list_filter = (("collection", TeamCollectionFilter),)
    search_fields = ("worker", "collection__name")
    list_select_related = ("collection",)
    date_hierarchy = "finished_at"
    show_full_result_count = False


@admin.register(OptimizationChange)
class OptimizationChangeAdmin(TeamScoped, ReadOnlyAdmin):
    list_display = ("applied_at", "collection", "setting", "before", "after", "status", "note", "applied_by")
    list_filter = ("status", "setting", ("collection", TeamCollectionFilter))
    search_fields = ("collection__name", "setting", "note")
    list_select_related = ("collection",)
    actions = ("evaluate_changes",)

    has_apply_permission = holds("pipeline.apply_optimizationchange")

    @admin.action(description="Keep or revert the selected changes now (if measured)", permissions=["apply"])
    def evaluate_changes(self, request: HttpRequest, queryset: QuerySet[OptimizationChange]) -> None:
        done = [e for c in queryset.pending().select_related("collection") if (e := evaluate(c)) is not None]
        kept = sum(e.status == "kept" for e in done)
        note = f"{kept} kept, {len(done) - kept} reverted; the others are concluded already or still measuring"
        self.message_user(request, f"Evaluated {len(done)} change(s): {note}.", messages.SUCCESS)

    def get_urls(self) -> list[URLPattern]:
        page = path("performance/", self.admin_site.admin_view(self.performance_view), name="pipeline_performance")
        return [page, *super().get_urls()]

    def performance_view(self, request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        if not request.user.has_perm("pipeline.view_optimizationchange"):
            raise PermissionDenied
        if request.method == "POST":
            return _apply(self, request)
        seen = Collection.objects.visible_to(request.user).order_by("name")
        collection = seen.filter(name=name).first() if (name := request.GET.get("collection")) else None
        if name and collection is None:  # the SLO page says so too: a mistyped name is not "every collection"
            self.message_user(request, f"no collection named {name!r}", messages.ERROR)
        figures = performance(collection, None, request.user)
        trend = performance_trends(timezone.now(), figures["window_seconds"], collection)
        context = {
            **self.admin_site.each_context(request),
            "title": "Performance",
            "figures": figures,
            "stages": list(figures["stages"].items()),
            "collection": collection,
            "collections": seen,
            "costs": [(c, format_cost(c)) for c in seen.select_related("cost")],
            "trend": trend,
            "trend_stages": list(trend["p95"]),
            "has_batches": any(trend["documents"]),
            "has_slo_history": any(v is not None for series in trend["slos"].values() for v in series),
            "can_apply": self.has_apply_permission(request),
        }
        return TemplateResponse(request, "admin/pipeline/performance.html", context)


def performance_trends(now: datetime, window: int, collection: Collection | None) -> dict[str, Any]:
    """The page's charts: per-stage percentiles and docs/s (of the chosen collection, or all), the capacity
    at the deployed worker count, and the deployment's SLOs."""
    since = now - timedelta(seconds=window)
    out = db_trend(since, now, TREND_STEPS, collection.pk if collection else None)
    found = slos.evaluate(since, now, TREND_STEPS, only={"document_latency", "throughput_per_worker"})
    out["slos"] = {slo: [None if e.ratio is None else round(e.ratio, 6) for e in steps] for slo, steps in found.items()}
    # One pod's docs/s times the most worker pods: what the Grafana panel reads from the capacity gauge.
    out["capacity"] = cap.as_dict() if (cap := capacity.current()) else None
    return out


def _apply(model_admin: OptimizationChangeAdmin, request: HttpRequest) -> HttpResponse:
    if not model_admin.has_apply_permission(request):
        raise PermissionDenied
    collection = Collection.objects.visible_to(request.user).filter(name=request.POST.get("collection", "")).first()
    back = HttpResponseRedirect(reverse("admin:pipeline_performance"))
    if collection is None:
        model_admin.message_user(request, "No such collection.", messages.ERROR)
        return back
    try:
        change = EmbeddingPipelineOperationsOptimizer().apply(
            collection, request.POST.get("recommendation", ""), applied_by=request.user.get_username()
        )
    except OptimizerError as exc:
        model_admin.message_user(request, str(exc), messages.ERROR)
        return back
    changes = {change.setting: [change.before, change.after]}
    trail.admin(request, "apply", OptimizationChange.objects.filter(pk=change.pk), changes=changes)
    model_admin.message_user(
        request,
        f"Applied: {collection.name}.{change.setting} {change.before} -> {change.after}: "
        f"{KINDS[change.setting].verdict}.",
        messages.SUCCESS,
    )
    return back
