from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound, PermissionDenied, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from pipeline import queue
from pipeline import search as semantic
from pipeline.api.serializers import (
    CollectionSerializer,
    DocumentSerializer,
    IncomingDocumentSerializer,
    SearchSerializer,
    max_documents,
)
from pipeline.collections import create_collection
from pipeline.embedding import PipelineError
from pipeline.models import Collection, Document


def _require(request: Request, perm: str) -> None:
    if not request.user.has_perm(perm):
        raise PermissionDenied(f"permission {perm} required")


def _collection(name: str | None) -> Collection:
    try:
        return Collection.objects.get(name=name)
    except Collection.DoesNotExist:
        raise NotFound(f"no collection named {name!r}") from None


class CollectionViewSet(viewsets.ModelViewSet):
    queryset = Collection.objects.all()
    serializer_class = CollectionSerializer
    lookup_field = "name"
    lookup_value_regex = "[-a-zA-Z0-9_]+"

    def perform_create(self, serializer: CollectionSerializer) -> None:
        try:
            serializer.instance = create_collection(**serializer.validated_data)
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict if hasattr(exc, "message_dict") else exc.messages) from None

    @extend_schema(request=IncomingDocumentSerializer(many=True), responses={202: dict})
    @action(detail=True, methods=["get", "post"], url_path="documents", permission_classes=[IsAuthenticated])
    def documents(self, request: Request, name: str | None = None) -> Response:
        """GET lists the collection's documents; POST enqueues one document or a list of them."""
        collection = _collection(name)
        if request.method == "GET":
            _require(request, "pipeline.view_document")
            qs = Document.objects.filter(collection=collection).select_related("collection").order_by("id")
            if status_filter := request.query_params.get("status"):
                qs = qs.filter(status=status_filter)
            page = self.paginate_queryset(qs)
            return self.get_paginated_response(DocumentSerializer(page, many=True).data)
        _require(request, "pipeline.add_document")
        payload = request.data
        many = isinstance(payload, list)
        items = payload if many else [payload]
        if not items:
            raise ValidationError("send one document object or a non-empty list of them")
        if len(items) > max_documents():
            raise ValidationError(
                f"{len(items)} documents in one request; the limit is {max_documents()} "
                "(EMBEDPORTAL_MAX_DOCUMENTS_PER_REQUEST)"
            )
        serializer = IncomingDocumentSerializer(data=items, many=True)
        if not serializer.is_valid():
            # DRF 3.18 reports a list's errors as {index: errors} for the failing items only.
            found = serializer.errors
            errors = {str(i): e for i, e in (found.items() if isinstance(found, dict) else enumerate(found)) if e}
            raise ValidationError({"documents": errors})
        docs = [
            queue.IncomingDocument(d["id"], d["text"], d.get("modified_at"), d.get("metadata") or {})
            for d in serializer.validated_data
        ]
        try:
            result = queue.enqueue(collection, docs)
        except queue.InvalidDocument as exc:
            index = next((i for i, d in enumerate(docs) if _invalid(d)), None)
            raise ValidationError({"documents": {str(index): [str(exc)]}} if index is not None else str(exc)) from None
        return Response(result.as_dict(), status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=SearchSerializer, responses={200: dict})
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def search(self, request: Request, name: str | None = None) -> Response:
        """Semantic search: the k chunks nearest to the query, best first."""
        _require(request, "pipeline.view_chunk")
        collection = _collection(name)
        serializer = SearchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            hits = semantic.search(collection, serializer.validated_data["query"], serializer.validated_data["k"])
        except PipelineError as exc:
            return Response(
                {"error": {"status": 502, "message": f"embedding the query failed: {exc}"}},
                status=status.HTTP_502_BAD_GATEWAY,
            )
        return Response({"collection": collection.name, "results": [h.as_dict() for h in hits]})

    # Operator triggers: the same compare-and-swap QuerySet transitions as the admin actions.

    @extend_schema(request=None, responses={200: dict})
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def pause(self, request: Request, name: str | None = None) -> Response:
        """Stop workers claiming this collection's documents (those in flight finish)."""
        _require(request, "pipeline.pause_collection")
        collection = self.get_object()
        changed = Collection.objects.filter(pk=collection.pk).pause()
        return Response({"collection": collection.name, "paused": True, "changed": bool(changed)})

    @extend_schema(request=None, responses={200: dict})
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def resume(self, request: Request, name: str | None = None) -> Response:
        """Let workers claim this collection's documents again."""
        _require(request, "pipeline.pause_collection")
        collection = self.get_object()
        changed = Collection.objects.filter(pk=collection.pk).resume()
        return Response({"collection": collection.name, "paused": False, "changed": bool(changed)})

    @extend_schema(request=None, responses={202: dict})
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def reembed(self, request: Request, name: str | None = None) -> Response:
        """Requeue every embedded or failed document of the collection (pending ones are already queued)."""
        _require(request, "pipeline.reembed_collection")
        collection = self.get_object()
        requeued = Collection.objects.filter(pk=collection.pk).reembed()
        return Response({"collection": collection.name, "requeued": requeued}, status=status.HTTP_202_ACCEPTED)


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "the resource is not in a state that allows this"
    default_code = "conflict"


def _invalid(doc: queue.IncomingDocument) -> bool:
    try:
        queue.validate(doc)
    except queue.InvalidDocument:
        return True
    return False


class DocumentViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = DocumentSerializer
    queryset = Document.objects.select_related("collection").order_by("id")

    def get_queryset(self) -> Any:
        qs = super().get_queryset()
        params = self.request.query_params
        if collection := params.get("collection"):
            qs = qs.filter(collection__name=collection)
        if status_filter := params.get("status"):
            qs = qs.filter(status=status_filter)
        return qs

    @extend_schema(request=None, responses={202: DocumentSerializer, 409: dict})
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def requeue(self, request: Request, pk: str | None = None) -> Response:
        """Send an embedded or failed document back to the queue."""
        _require(request, "pipeline.requeue_document")
        document = self.get_object()
        if not Document.objects.filter(pk=document.pk).requeue():
            raise Conflict(f"document is {document.status}; only embedded or failed documents can be requeued")
        document.refresh_from_db()
        return Response(DocumentSerializer(document).data, status=status.HTTP_202_ACCEPTED)
