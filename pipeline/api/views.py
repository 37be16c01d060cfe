from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from audit import trail
from embedportal.api.errors import Conflict, error_body
from embedportal.api.permissions import demand, requires
from embedportal.api.strict import StrictModelSerializer, no_body
from pipeline import backfill, health, queue
from pipeline import search as semantic
from pipeline.api.filters import DocumentFilter
from pipeline.api.serializers import (
    CollectionSerializer,
    DocumentSerializer,
    EnqueuedSerializer,
    EvaluateSerializer,
    EvaluationSerializer,
    HealthSerializer,
    IncomingDocumentSerializer,
    PausedSerializer,
    ReembeddingSerializer,
    SearchResultSerializer,
    SearchSerializer,
)
from pipeline.choices import DocumentStatus
from pipeline.collections import create_collection
from pipeline.embedding import PipelineError
from pipeline.models import Collection, Document, sees_all_collections, visible
from pipeline.quality import evaluate

CanListOrAddDocuments = requires(GET="pipeline.view_document", POST="pipeline.add_document")
CanEvaluate = requires(GET="pipeline.view_retrievalevaluation", POST="pipeline.add_retrievalevaluation")
CanSearch = requires("pipeline.view_chunk")
CanPause = requires("pipeline.pause_collection")
CanReembed = requires("pipeline.reembed_collection")
CanRequeue = requires("pipeline.requeue_document")
CanViewOrDeleteDocument = requires(GET="pipeline.view_document", DELETE="pipeline.delete_document")


class ReembedSerializer(StrictModelSerializer):
    """What a re-embed may change; every field optional (none: the same configuration, e.g. after a
    provider's model update). A new model without dimensions gets them from the model. Types and
    bounds are the model fields'."""

    class Meta:
        model = Collection
        fields = list(Collection.REEMBED_FIELDS)
        extra_kwargs = dict.fromkeys(fields, {"required": False})


def invalid(exc: DjangoValidationError) -> ValidationError:
    """A model's ValidationError as the API's 400, by field where it names fields."""
    return ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)


def provider_failed(what: str, exc: PipelineError) -> Response:
    """502: the embedding provider failed a call the request needed."""
    return Response(error_body(502, f"{what} failed: {exc}"), status=status.HTTP_502_BAD_GATEWAY)


def valid(serializer: type[Serializer], request: Request) -> Any:
    """The request body's validated data, or a 400 saying what to fix."""
    body = serializer(data=request.data, context={"request": request})
    body.is_valid(raise_exception=True)
    return body.validated_data


def collection_or_404(request: Request, name: str | None) -> Collection:
    """The named collection if the request's user may see it (their team's, or any for an operator);
    one 404 for an unknown one and another team's, on every route."""
    try:
        return Collection.objects.visible_to(request.user).get(name=name)
    except Collection.DoesNotExist:
        raise NotFound(f"no collection named {name!r}") from None


CHANGE_NOTE = (
    "model and dimensions cannot change here: use reembed. A change of hnsw_m or hnsw_ef_construction "
    "rebuilds the index. Permission pipeline.change_collection."
)


@extend_schema_view(
    list=extend_schema(summary="List the collections"),
    create=extend_schema(
        summary="Create a collection",
        description="Creates the collection and its HNSW index; dimensions left out are asked of the model. "
        "Permission pipeline.add_collection.",
    ),
    retrieve=extend_schema(summary="One collection, by name"),
    update=extend_schema(summary="Replace a collection's settings", description=CHANGE_NOTE),
    partial_update=extend_schema(summary="Change some of a collection's settings", description=CHANGE_NOTE),
    destroy=extend_schema(
        summary="Delete a collection",
        description="Deletes its documents, chunks, index and history. Permission pipeline.delete_collection.",
    ),
)
class CollectionViewSet(viewsets.ModelViewSet):
    """Collections: a model, its chunking and provider settings, and one HNSW index each."""

    query_parameters = {"documents": ("collection", "status")}  # DocumentFilter, checked by the action
    queryset = Collection.objects.select_related("team")
    serializer_class = CollectionSerializer
    lookup_field = "name"
    lookup_value_regex = "[-a-zA-Z0-9_]+"

    def get_object(self) -> Collection:
        collection = collection_or_404(self.request, self.kwargs["name"])
        self.check_object_permissions(self.request, collection)
        return collection

    # Fields a PUT or PATCH changes only with the permission of the action that changes them too.
    field_permissions = {"paused": CanPause.perm}

    def get_queryset(self) -> Any:
        return super().get_queryset().visible_to(self.request.user)

    def perform_create(self, serializer: CollectionSerializer) -> None:
        try:
            serializer.instance = create_collection(**serializer.validated_data)
        except DjangoValidationError as exc:
            raise invalid(exc) from None
        trail.note(self.request, collection=serializer.instance.name)

    def perform_update(self, serializer: CollectionSerializer) -> None:
        before = {name: getattr(serializer.instance, name) for name in serializer.validated_data}
        for field, perm in self.field_permissions.items():
            if field in before and serializer.validated_data[field] != before[field]:
                demand(self.request, perm)
        with transaction.atomic():
            # Locked first, as a DELETE locks it: one committed meanwhile is a 404, not a save of no row (a 500).
            if not Collection.objects.select_for_update(no_key=True).filter(pk=serializer.instance.pk).exists():
                raise NotFound(f"no collection named {serializer.instance.name!r}")
            super().perform_update(serializer)
        after = {name: getattr(serializer.instance, name) for name in serializer.validated_data}
        # A rename is recorded under the new name, as the admin records it.
        trail.note(self.request, collection=serializer.instance.name, changes=trail.changes(before, after))

    def perform_destroy(self, instance: Collection) -> None:
        documents = Document.objects.filter(collection=instance).count()
        if instance.delete()[0] == 0:  # another request deleted it meanwhile
            raise NotFound(f"no collection named {instance.name!r}")
        trail.note(self.request, documents=documents)

    @extend_schema(
        methods=["GET"],
        parameters=[OpenApiParameter("status", enum=DocumentStatus.values)],
        request=None,
        responses={200: DocumentSerializer(many=True)},
    )
    @extend_schema(
        methods=["POST"],
        request=PolymorphicProxySerializer(
            "IncomingDocuments",
            [IncomingDocumentSerializer, IncomingDocumentSerializer(many=True)],
            resource_type_field_name=None,
            many=False,
        ),
        responses={202: EnqueuedSerializer},
    )
    @action(detail=True, methods=["get", "post"], url_path="documents", permission_classes=[CanListOrAddDocuments])
    def documents(self, request: Request, name: str | None = None) -> Response:
        """GET lists the collection's documents; POST enqueues one document or a list of them."""
        collection = collection_or_404(request, name)
        if request.method == "GET":
            docs = Document.objects.filter(collection=collection).select_related("collection").order_by("id")
            filters = DocumentFilter(request.query_params, queryset=docs, request=request)
            if not filters.is_valid():
                raise ValidationError(filters.errors)
            page = self.paginate_queryset(filters.qs)
            return self.get_paginated_response(DocumentSerializer(page, many=True).data)
        items = request.data if isinstance(request.data, list) else [request.data]
        if not items:
            raise ValidationError("send one document object or a non-empty list of them")
        if len(items) > (limit := settings.EMBEDPORTAL_MAX_DOCUMENTS_PER_REQUEST):
            raise ValidationError(
                f"{len(items)} documents in one request; the limit is {limit} (EMBEDPORTAL_MAX_DOCUMENTS_PER_REQUEST)"
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
            result = queue.enqueue(collection, docs, source="api")
        except queue.InvalidDocument as exc:
            where = exc.index
            raise ValidationError({"documents": {str(where): [str(exc)]}} if where is not None else str(exc)) from None
        return Response(result.as_dict(), status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=SearchSerializer, responses={200: SearchResultSerializer})
    @action(detail=True, methods=["post"], permission_classes=[CanSearch])
    def search(self, request: Request, name: str | None = None) -> Response:
        """Search: the k best chunks (or documents) for the query, best first, by vector, keyword or hybrid
        ranking (default: the collection's search_mode)."""
        collection = collection_or_404(request, name)
        data = valid(SearchSerializer, request)
        try:
            hits = semantic.search(
                collection, data["query"], data["k"], "api", data["by_document"], data.get("mode"), fallback=True
            )
        except PipelineError as exc:
            return provider_failed("embedding the query", exc)
        answer = {"collection": collection.name, "mode": hits.mode, "fallback": hits.fallback}
        return Response({**answer, "results": [h.as_dict() for h in hits]})

    @extend_schema(
        methods=["GET"],
        operation_id="collections_evaluations_list",
        summary="A collection's retrieval quality history",
        description="Its evaluations of the golden queries, newest first, a page as every list is. Permission "
        "pipeline.view_retrievalevaluation.",
        request=None,
        responses={200: EvaluationSerializer(many=True)},
    )
    @extend_schema(
        methods=["POST"],
        operation_id="collections_evaluations_create",
        summary="Evaluate a collection's retrieval quality now",
        description="Runs its golden queries through search (mode: the collection's unless given) and stores the "
        "figures; 400 if it has no golden queries. Permission pipeline.add_retrievalevaluation.",
        request=EvaluateSerializer,
        responses={201: EvaluationSerializer},
    )
    @action(detail=True, methods=["get", "post"], permission_classes=[CanEvaluate])
    def evaluations(self, request: Request, name: str | None = None) -> Response:
        """Retrieval quality (pipeline.quality.evaluate) of the collection's golden queries, which are read and
        written at /api/v1/embedding-pipeline-operations/golden-queries/."""
        collection = collection_or_404(request, name)
        if request.method == "GET":
            page = self.paginate_queryset(collection.evaluations.all())
            return self.get_paginated_response(EvaluationSerializer(page, many=True).data)
        try:
            run = evaluate(collection, valid(EvaluateSerializer, request).get("mode"), trigger="api")
        except DjangoValidationError as exc:
            raise invalid(exc) from None
        except PipelineError as exc:
            return provider_failed("embedding a query", exc)
        return Response(EvaluationSerializer(run).data, status=status.HTTP_201_CREATED)

    # Operator triggers: the same compare-and-swap QuerySet transitions as the admin actions.

    @extend_schema(request=None, responses={200: PausedSerializer})
    @action(detail=True, methods=["post"], permission_classes=[CanPause])
    def pause(self, request: Request, name: str | None = None) -> Response:
        """Stop workers claiming this collection's documents (those in flight finish)."""
        return self._set_paused(True)

    @extend_schema(request=None, responses={200: PausedSerializer})
    @action(detail=True, methods=["post"], permission_classes=[CanPause])
    def resume(self, request: Request, name: str | None = None) -> Response:
        """Let workers claim this collection's documents again."""
        return self._set_paused(False)

    def _set_paused(self, paused: bool) -> Response:
        no_body(self.request)
        collection = self.get_object()
        selected = Collection.objects.filter(pk=collection.pk)
        changed = selected.pause() if paused else selected.resume()
        return Response({"collection": collection.name, "paused": paused, "changed": bool(changed)})

    @extend_schema(request=ReembedSerializer, responses={202: ReembeddingSerializer})
    @action(detail=True, methods=["post"], permission_classes=[CanReembed])
    def reembed(self, request: Request, name: str | None = None) -> Response:
        """Re-embed every document into a new generation, with the body's changes (another model,
        provider options or chunking) if any: search answers from the current vectors, with the current
        model, until the new ones are complete and indexed, then switches (pipeline.backfill)."""
        collection = self.get_object()
        # An empty body is {} (or an empty form); anything else that is not an object is a 400.
        changes = valid(ReembedSerializer, request)
        try:
            changes = backfill.with_dimensions(collection, changes)
            before = {name: getattr(collection, name) for name in changes}
            requeued = backfill.begin_reembed(collection, **changes)
        except DjangoValidationError as exc:
            raise invalid(exc) from None
        # The event named no change: who moved the collection to another model or chunking was lost.
        trail.note(request, changes=trail.changes(before, changes))
        return Response({"collection": collection.name, "requeued": requeued}, status=status.HTTP_202_ACCEPTED)


class DocumentViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Documents of every collection (`?collection=`, `?status=`); each is addressed by its
    collection and id: /api/v1/collections/<name>/documents/<id>/ (its `url`)."""

    serializer_class = DocumentSerializer
    queryset = Document.objects.select_related("collection").order_by("id")
    filter_backends = [DjangoFilterBackend]
    filterset_class = DocumentFilter

    def get_queryset(self) -> Any:
        return super().get_queryset().filter(visible(self.request.user, "collection"))


def _document(request: Request, name: str, external_id: str) -> Document:
    collection = collection_or_404(request, name)  # a missing (or unseen) collection says so
    try:
        return Document.objects.select_related("collection").get(collection=collection, external_id=external_id)
    except Document.DoesNotExist:
        raise NotFound(f"no document {external_id!r} in collection {name!r}") from None


class DocumentView(APIView):
    """GET /api/v1/collections/<name>/documents/<id>/: a document by its own id (slashes and dots
    included, e.g. docs/guide.md), as producers sent it; DELETE removes it and its chunks."""

    permission_classes = [CanViewOrDeleteDocument]

    @extend_schema(operation_id="collections_document_retrieve", responses={200: DocumentSerializer})
    def get(self, request: Request, name: str, external_id: str) -> Response:
        return Response(DocumentSerializer(_document(request, name, external_id)).data)

    @extend_schema(
        operation_id="collections_document_destroy",
        summary="Delete a document",
        description="Deletes the document and its chunks at once (search stops finding it; a worker embedding "
        "it stores nothing) and its failure record. A producer whose source removed the document sends this. "
        "Permission pipeline.delete_document.",
        request=None,
        responses={204: None},
    )
    def delete(self, request: Request, name: str, external_id: str) -> Response:
        no_body(request)
        Document.objects.filter(pk=_document(request, name, external_id).pk).remove()
        return Response(status=status.HTTP_204_NO_CONTENT)


class DocumentRequeueView(APIView):
    """POST /api/v1/collections/<name>/documents/<id>/requeue/: send an embedded or failed document
    back to the queue (the admin action's transition); 409 if it is pending or processing."""

    permission_classes = [CanRequeue]

    @extend_schema(
        operation_id="collections_document_requeue",
        request=None,
        responses={202: DocumentSerializer, 409: OpenApiResponse(description="It is pending or processing.")},
    )
    def post(self, request: Request, name: str, external_id: str) -> Response:
        no_body(request)
        document = _document(request, name, external_id)
        if not Document.objects.filter(pk=document.pk).requeue():
            raise Conflict(f"document is {document.status}; only embedded or failed documents can be requeued")
        document.refresh_from_db()
        return Response(DocumentSerializer(document).data, status=status.HTTP_202_ACCEPTED)


class HealthView(APIView):
    """The model answers, pgvector is writable, the queue is drained: 200 if all pass, else 503.

    Anonymous callers (load balancers, monitors) and team members get pass/fail per check only; a
    platform operator (token or session) gets each check's reason, duration and details, every model
    configuration and its collections included (they name every team's). Model probes are reused for
    EMBEDPORTAL_HEALTH_MODEL_CACHE_SECONDS: at most one provider call per configuration per interval.
    """

    permission_classes = [AllowAny]

    @extend_schema(responses={200: HealthSerializer, 503: HealthSerializer})
    def get(self, request: Request) -> Response:
        results = health.run_checks(cached=True)
        operator = request.user.is_authenticated and sees_all_collections(request.user)
        body = health.report(results) if operator else health.summary(results)
        return Response(body, status=200 if body["healthy"] else 503)
