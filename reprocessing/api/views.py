from __future__ import annotations

from typing import Any

from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from audit import trail
from embedportal.api.errors import Conflict
from embedportal.api.permissions import requires
from embedportal.api.strict import no_body
from pipeline.api.views import collection_or_404, valid
from pipeline.models import visible
from reprocessing import failures
from reprocessing.api.filters import FailedDocumentFilter
from reprocessing.api.serializers import BulkRetrySerializer, FailedDocumentSerializer, RetryResultSerializer
from reprocessing.choices import Resolution
from reprocessing.models import RETRYABLE, FailedDocument

CanRetry = requires("reprocessing.retry_faileddocument")
CanResolve = requires("reprocessing.resolve_faileddocument")


def _result(retried: dict[str, int]) -> Response:
    return Response(RetryResultSerializer({"retried": sum(retried.values()), "by_type": dict(retried)}).data)


class FailedDocumentViewSet(viewsets.ReadOnlyModelViewSet):
    """Failed documents. Reads need reprocessing.view_faileddocument; retrying needs
    reprocessing.retry_faileddocument; resolving and dead-lettering need
    reprocessing.resolve_faileddocument."""

    queryset = FailedDocument.objects.select_related("document", "document__collection")
    serializer_class = FailedDocumentSerializer
    lookup_value_regex = "[0-9]+"
    filter_backends = [DjangoFilterBackend]
    filterset_class = FailedDocumentFilter

    def get_queryset(self) -> Any:
        return super().get_queryset().filter(visible(self.request.user, "document__collection"))

    @extend_schema(request=None, responses={200: RetryResultSerializer})
    @action(detail=True, methods=["post"], permission_classes=[CanRetry])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        """Requeue the document now (a scheduled or dead-lettered failure)."""
        no_body(request)
        failure = self.get_object()
        retried = failures.retry(FailedDocument.objects.filter(pk=failure.pk))
        if not retried:
            raise Conflict(f"failure {failure.pk} was requeued or resolved already; nothing to retry")
        trail.note(request, collection=failure.document.collection.name)
        return _result(retried)

    def _transition(self, request: Request, change: Any, refusal: str) -> Response:
        """Apply `change` (a FailedDocumentQuerySet transition) to this failure, or 409 with `refusal`."""
        no_body(request)
        failure = self.get_object()
        if not change(FailedDocument.objects.filter(pk=failure.pk)):
            raise Conflict(f"failure {failure.pk} {refusal}")
        failure.refresh_from_db()
        return Response(self.get_serializer(failure).data)

    @extend_schema(request=None, responses={200: FailedDocumentSerializer})
    @action(detail=True, methods=["post"], url_path="dead-letter", permission_classes=[CanResolve])
    def dead_letter(self, request: Request, pk: str | None = None) -> Response:
        """Stop automatic retries and leave the document to an operator (scheduled failures only)."""
        return self._transition(
            request, lambda rows: rows.dead_letter(), "is not scheduled; only scheduled ones can be dead-lettered"
        )

    @extend_schema(request=None, responses={200: FailedDocumentSerializer})
    @action(detail=True, methods=["post"], permission_classes=[CanResolve])
    def resolve(self, request: Request, pk: str | None = None) -> Response:
        """Close the failure by hand (the document is left as it is)."""
        return self._transition(
            request, lambda rows: rows.resolve(Resolution.OPERATOR, timezone.now()), "is resolved already"
        )

    @extend_schema(
        operation_id="failures_bulk_retry", request=BulkRetrySerializer, responses={200: RetryResultSerializer}
    )
    @action(detail=False, methods=["post"], url_path="retry", url_name="bulk-retry", permission_classes=[CanRetry])
    def bulk_retry(self, request: Request) -> Response:
        """Retry every scheduled or dead-lettered failure of one error type now."""
        body = valid(BulkRetrySerializer, request)
        qs = self.get_queryset().filter(RETRYABLE, error_type=body["error_type"])
        if name := body.get("collection"):
            qs = qs.filter(document__collection=collection_or_404(request, name))
        return _result(failures.retry(qs))
