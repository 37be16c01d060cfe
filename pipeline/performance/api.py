"""The optimizer's figures and recommendations (GET .../performance; POST .../performance/apply, both
with and without the trailing slash) and the admin's "SLOs and capacity" figures (GET /api/v1/slos/)."""

from __future__ import annotations

from typing import Any

from django.urls import path, re_path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit import trail
from embedportal.api.errors import Conflict
from embedportal.api.permissions import requires
from embedportal.api.strict import StrictCharField, StrictFieldsMixin
from pipeline.api.serializers import CollectionField
from pipeline.api.views import valid
from pipeline.models import Collection, OptimizationChange, sees_all_collections, visible
from pipeline.performance import compliance as performance_slos
from pipeline.performance import slo_page, slos
from pipeline.performance.optimizer import EmbeddingPipelineOperationsOptimizer, OptimizerError, window_problem

RECENT_CHANGES = 20


class OptimizationChangeSerializer(serializers.ModelSerializer):
    collection = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = OptimizationChange
        fields = "__all__"


def free(help_text: str, **kwargs: Any) -> serializers.DictField:
    return serializers.DictField(help_text=help_text, **kwargs)


class PercentilesSerializer(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True, help_text="Seconds per document; null: none in the window.")
    p95 = serializers.FloatField(allow_null=True)
    p99 = serializers.FloatField(allow_null=True)
    count = serializers.IntegerField()


class RecommendationSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="What POST performance/apply names.")
    title = serializers.CharField()
    expected_effect = serializers.CharField()
    reason = serializers.CharField()
    collection = serializers.CharField(allow_null=True, help_text="null: a deployment setting, advice only.")
    setting = serializers.CharField(allow_null=True)
    current = serializers.JSONField(allow_null=True)
    proposed = serializers.JSONField(allow_null=True)
    appliable = serializers.BooleanField()


class SloTargetSerializer(serializers.Serializer):
    slo = serializers.CharField()
    target = serializers.FloatField(
        allow_null=True, help_text="null: throughput_per_worker with its setting unset (only measured models held)."
    )
    compliance = serializers.FloatField(allow_null=True, help_text="null: no events.")


class PerformanceSerializer(serializers.Serializer):
    """What GET performance answers (EmbeddingPipelineOperationsOptimizer.analyse, with the SLOs and changes)."""

    source = serializers.CharField()
    window_seconds = serializers.IntegerField()
    stages = serializers.DictField(child=PercentilesSerializer(), help_text="By stage, `total` included.")
    utilisation = serializers.DictField(child=serializers.FloatField(), help_text="Share of worker time by stage.")
    workers = serializers.IntegerField()
    documents = serializers.IntegerField()
    bottleneck = free("The stage (null: no documents), its shares of p95 and p99, and why.")
    recommendations = RecommendationSerializer(many=True)
    collections = serializers.DictField(child=free("documents, batches, stages, bottleneck, cost."))
    slos = SloTargetSerializer(many=True)
    throughput_targets = serializers.ListField(child=free("model, docs_per_second and where the target is from."))
    changes = OptimizationChangeSerializer(many=True, help_text="The most recent first.")


class SloStatusSerializer(serializers.Serializer):
    name = serializers.CharField()
    objective = serializers.FloatField()
    description = serializers.CharField()
    period = serializers.CharField()
    compliance = serializers.DictField(
        child=serializers.FloatField(allow_null=True), help_text="By window; null: no events."
    )
    events = serializers.DictField(child=free("good and total events."), help_text="By window.")
    error_budget_left = serializers.FloatField(allow_null=True)
    burn_rate = serializers.DictField(child=serializers.FloatField(allow_null=True), help_text="Over 1h and 6h.")
    met = serializers.BooleanField(allow_null=True)


class SloFiguresSerializer(serializers.Serializer):
    """What GET slos answers (slo_page.figures): the page's figures and chart series."""

    now = serializers.DateTimeField()
    collection = serializers.CharField(allow_null=True)
    range = serializers.CharField()
    freshness_sla_seconds = serializers.FloatField()
    slos = SloStatusSerializer(many=True)
    throughput_targets = serializers.ListField(child=free("model, docs_per_second and where the target is from."))
    capacity = free("The capacity plan (pipeline.performance.capacity).")
    measurement = free("The last capacity measurement with its USL fit.", allow_null=True)
    series = free("The chart series of `range`.")
    arrivals = free("Arrivals the plan read.")
    bucket_bounds = free("Histogram bucket bounds, in seconds.")


class ApplySerializer(StrictFieldsMixin, serializers.Serializer):
    collection = CollectionField()
    recommendation = StrictCharField(max_length=200, help_text="A recommendation's id from GET performance.")


def performance(collection: Collection | None, window: int | None, user: Any = None) -> dict[str, Any]:
    """The command's JSON, the SLOs and the recent changes, for the API and the admin page. A team member gets
    the platform's figures (stages, bottleneck, SLOs) but only their teams' collections, recommendations, changes."""
    out = EmbeddingPipelineOperationsOptimizer(window).analyse(collection).as_dict()
    if not sees_all_collections(user):
        seen = set(Collection.objects.visible_to(user).values_list("name", flat=True))
        out["collections"] = {name: f for name, f in out["collections"].items() if name in seen}
        out["recommendations"] = [r for r in out["recommendations"] if r["collection"] in (None, *seen)]
    compliance = performance_slos.compliance()
    out["slos"] = [
        {"slo": slo, "target": target, "compliance": compliance[slo]} for slo, target in slos.targets().items()
    ]
    out["throughput_targets"] = slos.model_targets(collection.pk if collection else None, user)
    changes = OptimizationChange.objects.select_related("collection").filter(visible(user, "collection"))
    if collection is not None:
        changes = changes.filter(collection=collection)
    out["changes"] = OptimizationChangeSerializer(changes[:RECENT_CHANGES], many=True).data
    return out


class PerformanceView(APIView):
    """p50/p95/p99 per stage (`stages`), the `bottleneck`, `recommendations` with their expected effect,
    per-collection figures and cost, the performance SLOs (with `throughput_targets`: each model's), and
    the optimizer's recent changes."""

    query_parameters = {"get": ("collection", "window")}
    permission_classes = [requires("pipeline.view_optimizationchange")]

    @extend_schema(
        parameters=[
            OpenApiParameter("collection", str, description="Only this collection"),
            OpenApiParameter("window", int, description="Seconds of history (EMBEDPORTAL_OPTIMIZER_WINDOW_SECONDS)"),
        ],
        responses={200: PerformanceSerializer},
    )
    def get(self, request: Request) -> Response:
        try:
            collection = slo_page.collection_named(request.query_params.get("collection"), request.user)
        except slo_page.BadRequest as exc:
            raise ValidationError({"collection": str(exc)}) from None
        window = request.query_params.get("window")
        if window is not None and (problem := window_problem(window)):
            raise ValidationError({"window": problem})
        return Response(performance(collection, None if window is None else int(window), request.user))


class ApplyView(APIView):
    """Apply one recommendation that changes a collection (batch size, HNSW build parameters,
    ef_search, backfill mode): 201 with the recorded change, measured before and kept or reverted
    by the evaluation schedule (an HNSW rebuild answers once the new index serves); 409 if it no
    longer applies, its setting changed meanwhile, another index build runs, or a change of the
    collection is already being measured."""

    permission_classes = [requires("pipeline.apply_optimizationchange")]

    @extend_schema(request=ApplySerializer, responses={201: OptimizationChangeSerializer})
    def post(self, request: Request) -> Response:
        body = valid(ApplySerializer, request)
        try:
            change = EmbeddingPipelineOperationsOptimizer().apply(
                body["collection"], body["recommendation"], applied_by=request.user.get_username()
            )
        except OptimizerError as exc:
            raise Conflict(str(exc)) from None
        trail.note(request, changes={change.setting: [change.before, change.after]})
        return Response(OptimizationChangeSerializer(change).data, status=status.HTTP_201_CREATED)


class SloView(APIView):
    """Each SLO's compliance over 1 h, 1 d and 30 d (null: no events), error budget left and burn rate
    over 1 h and 6 h; the capacity plan; the last capacity measurement with its USL fit; and the chart
    series of `range`, whose queue bound is capacity times `freshness_sla_seconds` (docs/slos.md)."""

    query_parameters = {"get": ("range", "collection", "headroom")}
    permission_classes = [requires("pipeline.view_collectionactivity")]

    @extend_schema(
        parameters=[
            OpenApiParameter("range", OpenApiTypes.STR, enum=list(slo_page.RANGES), default=slo_page.DEFAULT_RANGE),
            OpenApiParameter("collection", OpenApiTypes.STR, description="One collection (default: all user ones)"),
            OpenApiParameter("headroom", OpenApiTypes.FLOAT, default=0.3),
        ],
        responses={200: SloFiguresSerializer},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        try:
            headroom = float(params.get("headroom", 0.3))
        except ValueError:
            raise ValidationError({"headroom": slo_page.HEADROOM}) from None
        try:
            body = slo_page.figures(
                params.get("range", slo_page.DEFAULT_RANGE), params.get("collection"), headroom, user=request.user
            )
        except slo_page.BadRequest as exc:
            raise ValidationError({exc.parameter: str(exc)}) from None
        return Response(body)


urlpatterns = [
    path("slos/", SloView.as_view(), name="slos"),
    re_path(r"^embedding-pipeline-operations/performance/?$", PerformanceView.as_view(), name="performance"),
    re_path(r"^embedding-pipeline-operations/performance/apply/?$", ApplyView.as_view(), name="performance-apply"),
]
