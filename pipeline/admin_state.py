"""The operator console's read-only pages of what workers share and what the pipeline measured
(heartbeats, provider circuits, model probes, the history, capacity measurements), and the golden
queries with their evaluations. Registered by importing it from pipeline.admin. A ReadOnlyAdmin's
change page shows every field read-only: they need no readonly_fields."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from embedportal.admin import AuditedAdmin, ReadOnlyAdmin
from pipeline.access import TeamCollectionFilter, TeamScoped
from pipeline.models import (
    METRICS,
    CapacityMeasurement,
    Collection,
    CollectionActivity,
    GoldenQuery,
    ModelCheck,
    ProviderCircuit,
    RetrievalEvaluation,
    WorkerHeartbeat,
    sees_all_collections,
)


def holds(perm: str) -> Callable[[Any, HttpRequest], bool]:
    """A ModelAdmin's has_<name>_permission, for the actions declaring permissions=["<name>"]."""
    return lambda model_admin, request: request.user.has_perm(perm)


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdmin):
    list_display = ("worker", "role", "started_at", "beat_at")
    list_filter = ("role",)
    search_fields = ("worker",)


@admin.register(ProviderCircuit)
class ProviderCircuitAdmin(ReadOnlyAdmin):
    """The provider endpoints' circuit breakers, written by workers (pipeline.circuits); the
    operator's one lever is to have an open circuit probed now rather than at its backoff's end."""

    list_display = (
        "endpoint",
        "state",
        "consecutive_failures",
        "reopenings",
        "opened_at",
        "next_probe_at",
        "probe_owner",
        "last_error_type",
        "last_failure_at",
    )
    list_filter = ("state", "last_error_type")
    search_fields = ("endpoint",)
    exclude = ("api_base",)  # may carry credentials in its userinfo or query; the endpoint label has none
    actions = ("probe_now",)
    has_probe_permission = holds("pipeline.probe_providercircuit")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ProviderCircuit]:
        return super().get_queryset(request).visible_to(request.user)

    @admin.action(description="Probe the selected open circuits now", permissions=["probe"])
    def probe_now(self, request: HttpRequest, queryset: QuerySet[ProviderCircuit]) -> None:
        due = queryset.probe_now()
        self.message_user(
            request,
            f"{due} open circuit(s) are due for their probe: the next worker sends one fixed text (no document), and "
            f"an answer closes the circuit. {len(queryset) - due} were not open (closed, or already probing).",
            messages.SUCCESS,
        )


@admin.register(ModelCheck)
class ModelCheckAdmin(ReadOnlyAdmin):
    list_display = ("model", "ok", "seconds", "load_seconds", "checked_at", "reason")
    list_filter = ("ok", "model")
    search_fields = ("model", "reason")

    # One configuration's row lists every collection using it, whatever its team, and its reason names
    # one of them: a team member gets pass/fail and timings, as from /api/v1/health/ (health.for_viewer).
    OPERATORS_ONLY = ("collections", "reason")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelCheck]:
        return super().get_queryset(request).visible_to(request.user)

    def _for(self, request: HttpRequest, names: Sequence[str]) -> list[str]:
        shown = sees_all_collections(request.user)
        return [name for name in names if shown or name not in self.OPERATORS_ONLY]

    def get_list_display(self, request: HttpRequest) -> list[str]:
        return self._for(request, super().get_list_display(request))

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return self._for(request, super().get_search_fields(request))

    def get_fields(self, request: HttpRequest, obj: ModelCheck | None = None) -> list[str]:
        return self._for(request, super().get_fields(request, obj))


@admin.register(CollectionActivity)
class CollectionActivityAdmin(TeamScoped, ReadOnlyAdmin):
    """The SLO and capacity history, read-only: written by workers, producers and the schedules."""

    list_display = ("start", "collection", "seconds", "arrived", "embedded", "failed", "queue_depth")
    list_filter = ("seconds", ("collection", TeamCollectionFilter))
    list_select_related = ("collection",)
    date_hierarchy = "start"
    ordering = ("-start",)
    show_full_result_count = False  # big table: skip COUNT(*)


@admin.register(CapacityMeasurement)
class CapacityMeasurementAdmin(ReadOnlyAdmin):
    list_display = ("measured_at", "model", "local_encoder", "rates", "usl_sigma", "usl_kappa", "peak_workers")
    list_filter = ("model", "local_encoder")
    search_fields = ("model",)

    @admin.display(description="docs/s by workers")
    def rates(self, obj: CapacityMeasurement) -> str:
        return ", ".join(f"{p['workers']}: {p['docs_per_second']:.2f}" for p in obj.points)


@admin.register(GoldenQuery)
class GoldenQueryAdmin(TeamScoped, AuditedAdmin):
    """Questions and the document that answers each: what evaluate_retrieval scores search with."""

    list_display = ("query", "expected_document_id", "collection", "created_at")
    list_filter = (("collection", TeamCollectionFilter),)
    search_fields = ("query", "expected_document_id")
    list_select_related = ("collection",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[GoldenQuery]:
        return super().get_queryset(request).filter(collection__in=Collection.objects.user_collections())


@admin.register(RetrievalEvaluation)
class RetrievalEvaluationAdmin(TeamScoped, ReadOnlyAdmin):
    """Retrieval quality history: one row per evaluation of a collection's golden queries."""

    list_display = ("evaluated_at", "collection", "mode", "queries", *METRICS, "trigger")
    list_filter = (("collection", TeamCollectionFilter), "mode", "trigger")
    list_select_related = ("collection",)
    date_hierarchy = "evaluated_at"
