"""GET /api/v1/collections/<name>/evaluations/: a collection's retrieval quality history, newest
first; POST runs its golden queries now (pipeline.quality.evaluate) and answers with the new row.
Golden queries themselves are read and written at /api/v1/embedding-pipeline-operations/golden-queries/."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from embedportal.api.permissions import PermissionRequired
from embedportal.api.strict import StrictFieldsMixin
from pipeline.api.views import collection_or_404, invalid, provider_failed, valid
from pipeline.choices import SearchMode
from pipeline.embedding import PipelineError
from pipeline.models import RetrievalEvaluation
from pipeline.quality import evaluate

HISTORY = 50


class CanEvaluate(PermissionRequired):
    perms = {"GET": "pipeline.view_retrievalevaluation", "POST": "pipeline.add_retrievalevaluation"}


class EvaluationSerializer(serializers.ModelSerializer):
    class Meta:
        model = RetrievalEvaluation
        exclude = ["id", "collection"]


class EvaluateSerializer(StrictFieldsMixin, serializers.Serializer):
    mode = serializers.ChoiceField(SearchMode.choices, required=False, help_text="Default: the collection's.")


class EvaluationsView(APIView):
    permission_classes = [CanEvaluate]

    @extend_schema(
        operation_id="collections_evaluations_list",
        summary="A collection's retrieval quality history",
        description="Its latest evaluations of the golden queries, newest first. Permission "
        "pipeline.view_retrievalevaluation.",
        responses={200: EvaluationSerializer(many=True)},
    )
    def get(self, request: Request, name: str) -> Response:
        rows = collection_or_404(request, name).evaluations.all()[:HISTORY]
        return Response(EvaluationSerializer(rows, many=True).data)

    @extend_schema(
        operation_id="collections_evaluations_create",
        summary="Evaluate a collection's retrieval quality now",
        description="Runs its golden queries through search (mode: the collection's unless given) and stores the "
        "figures; 400 if it has no golden queries. Permission pipeline.add_retrievalevaluation.",
        request=EvaluateSerializer,
        responses={201: EvaluationSerializer},
    )
    def post(self, request: Request, name: str) -> Response:
        collection = collection_or_404(request, name)
        try:
            run = evaluate(collection, valid(EvaluateSerializer, request.data).get("mode"), trigger="api")
        except DjangoValidationError as exc:
            raise invalid(exc) from None
        except PipelineError as exc:
            return provider_failed("embedding a query", exc)
        return Response(EvaluationSerializer(run).data, status=status.HTTP_201_CREATED)
