"""The operator console for collections, the document queue and chunks."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from embedportal.admin import AuditedAdmin, ReadOnlyAdmin
from embedportal.api.strict import BoundedJSONFormField
from pipeline import backfill, encoder, overview, providers, quality, queue, storage
from pipeline.access import TeamCollectionFilter, TeamScoped
from pipeline.admin_state import holds  # importing it registers the read-only state and quality pages
from pipeline.collections import resolve_dimensions
from pipeline.models import Chunk, Collection, Document, sees_all_collections
from pipeline.performance import admin as performance_admin
from pipeline.performance import slo_page, slos

# Fields a form may leave empty for their default (pgvector's for HNSW), as the API does.
DEFAULTED_FIELDS = (
    "hnsw_m",
    "hnsw_ef_construction",
    "provider_concurrency",
    "search_mode",
    "keyword_weight",
    "fusion",
    "retrieval_target",
)


def _params(options: dict[str, int]) -> str:
    return f"m={options['m']}, ef_construction={options['ef_construction']}"


# The admin index links the pipeline overview (a custom view of CollectionAdmin).
admin.site.index_template = "admin/pipeline/index.html"


class SchemedURLField(forms.URLField):
    """A URL with its scheme, as the API takes it: Django's field completed "host/v1" with a scheme it guessed."""

    def to_python(self, value: Any) -> str:
        if value and "://" not in value:
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)


def _api_base(label: str, help_text: str) -> forms.URLField:
    length = Collection._meta.get_field("api_base").max_length
    return SchemedURLField(label=label, max_length=length, required=False, assume_scheme="https", help_text=help_text)


class CollectionForm(forms.ModelForm):
    # The key rule is said here, not in the model's help texts (a migration for each wording).
    api_base = _api_base(
        "API base",
        "LiteLLM api_base, if any. A named key variable's key goes here only if the operator bound this host to "
        "it (EMBEDPORTAL_PROVIDER_KEY_HOSTS); without a key variable it gets the key EMPTY.",
    )
    rerank_api_base = _api_base("Rerank API base", "The reranker's api_base, if any (the same key rules).")

    class Meta:
        model = Collection
        fields = Collection.EDITABLE_FIELDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "dimensions" in self.fields:
            self.fields["dimensions"].required = False
            self.fields["dimensions"].help_text = "Leave empty to ask the model."
        # Absent when read-only: a user who may only view the collection gets no field to fill.
        for name in set(DEFAULTED_FIELDS) & set(self.fields):
            self.fields[name].required = False
        # Saved are the fields changed from what the page showed, not from the row as it is at the save:
        # a pause (or another operator's edit) made while the form was open stays.
        for field in self.fields.values():
            field.show_hidden_initial = True

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for name in DEFAULTED_FIELDS:
            if data.get(name) in (None, "") and name not in self.errors:
                data[name] = Collection._meta.get_field(name).default
        if self.instance.pk is None and data.get("dimensions") is None and data.get("model") and not self.errors:
            probe = Collection(**{name: data.get(name) for name in Collection.SERVING_FIELDS})
            try:
                data["dimensions"] = resolve_dimensions(probe)
            except ValidationError as exc:
                raise forms.ValidationError(exc.messages) from None
        return data


# JSON typed into a form goes through the API's depth check before it is parsed.
BOUNDED_JSON = {models.JSONField: {"form_class": BoundedJSONFormField}}


def deletion_summary(model_admin: Any, request: HttpRequest, objs: Any, path: str, *cascaded: Any) -> tuple:
    """Django's delete confirmation with the rows listed and the `cascaded` models' rows going with them
    (by `path`) counted: its collector listed every chunk (thousands of lines, all read into memory, for
    a large selection) and asked for a chunk delete permission."""
    objs, meta = list(objs), model_admin.model._meta
    refused = set() if model_admin.has_delete_permission(request) else {meta.verbose_name}
    counts = {meta.verbose_name_plural: len(objs)}
    for model in cascaded:
        counts[model._meta.verbose_name_plural] = model.objects.filter(**{f"{path}__in": objs}).count()
    return [str(o) for o in objs], counts, refused, []


@admin.register(Collection)
class CollectionAdmin(TeamScoped, AuditedAdmin):
    collection_path = ""
    formfield_overrides = BOUNDED_JSON
    form = CollectionForm
    list_display = (
        "name",
        "team",
        "model",
        "dimensions",
        "chunking_strategy",
        "chunk_size",
        "chunk_unit",
        "batch_size",
        "paused",
        "local_encoder",
        "embedding_cost",
    )
    list_select_related = ("cost", "team")
    list_filter = ("paused", "chunking_strategy", "model", ("team", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "model")
    actions = ("pause_collections", "resume_collections", "reembed_collections")

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[list, dict, set, list]:
        return deletion_summary(self, request, objs, "collection", Document, Chunk)

    # Each with its set-wise raw deletes (Collection.delete), not Django's collector over every chunk.
    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Collection]) -> None:
        for collection in queryset:
            collection.delete()

    def save_model(self, request: HttpRequest, obj: Collection, form: forms.ModelForm, change: bool) -> None:
        obj.save(update_fields=[*form.changed_data, "updated_at"] if change else None)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        """A team member picks one of their own teams; only operators may leave it empty (the platform's)."""
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "team" and not sees_all_collections(request.user):
            field.queryset, field.required = request.user.groups.all(), True
        return field

    def get_readonly_fields(self, request: HttpRequest, obj: Collection | None = None) -> tuple[str, ...]:
        # The model and dimensions fix the HNSW index: they change only with a re-embed (the API's reembed).
        # contextual_chunks changes what is embedded, the chunking how documents were cut (once there are
        # some, Collection.CHUNKING_FIELDS): only a re-embed changes them.
        # One permission per action: the paused box needs the pause permission, as the pause action does.
        paused = () if self.has_pause_permission(request) else ("paused",)
        shown = ("model", "dimensions", "contextual_chunks", "local_runtime", "hnsw_index", "embedding_cost")
        chunking = Collection.CHUNKING_FIELDS if obj and obj.has_documents() else ()
        return (*paused, *(shown if obj else ()), *chunking, "created_at", "updated_at")

    @admin.display(description="HNSW index")
    def hnsw_index(self, obj: Collection) -> str:
        """What the index was built with, which may lag the fields until it is rebuilt."""
        built = storage.index_options(obj.index_name)
        wanted = {"m": obj.hnsw_m, "ef_construction": obj.hnsw_ef_construction}
        if (generation := obj.building_generation) is not None:
            if why := backfill.held_back(obj):
                return why
            return f"a backfill writes generation {generation}: its index is built at the end with {_params(wanted)}"
        if built is None:
            return "missing: search scans the collection's rows exactly"
        if built != wanted:
            return f"{obj.index_name}, built with {_params(built)}: an idle worker rebuilds it with {_params(wanted)}"
        return f"{obj.index_name}, built with {_params(built)}"

    @admin.display(description="local model runtime")
    def local_runtime(self, obj: Collection) -> str:
        """Which runtime wrote the vectors and which one serves now (pipeline.encoder), with why
        PyTorch serves if the OpenVINO export was refused."""
        if obj.model != providers.LOCAL_MODEL:
            return "-"
        local = encoder.current()
        # "torch/f32 serves (why OpenVINO was refused)": the reason follows the verb.
        serving = f"{encoder.label(local)} serves" + (f" ({local.reason})" if local.reason else "")
        if gate := local.gate:
            serving += (
                f", faithfulness gate passed: cosine to PyTorch mean {gate['mean_cosine']:.4f}, "
                f"min {gate['min_cosine']:.4f}"
            )
        if change := obj.runtime_gate:
            figures = ""
            if reference := change.get("reference"):
                figures = (
                    f" (golden queries: recall@5 {change['recall_at_5']} vs PyTorch {reference['recall_at_5']}, "
                    f"MRR@10 {change['mrr_at_10']} vs {reference['mrr_at_10']})"
                )
            serving += f"; last change {change['from']} -> {change['runtime']}{figures}: " + (
                f"re-embedded, {'; '.join(change['problems'])}" if change["reembedded"] else "vectors kept"
            )
        return f"vectors written by {obj.local_encoder or 'none yet'}; {serving}"

    @admin.display(description="embedding cost (USD)")
    def embedding_cost(self, obj: Collection) -> str:
        return performance_admin.format_cost(obj)

    has_pause_permission = holds("pipeline.pause_collection")
    has_reembed_permission = holds("pipeline.reembed_collection")

    @admin.action(description="Pause selected collections (workers stop claiming them)", permissions=["pause"])
    def pause_collections(self, request: HttpRequest, queryset: QuerySet[Collection]) -> None:
        # The selection is counted first: a paused row may no longer match the list's filter (paused: No).
        selected, changed = len(queryset), queryset.pause()
        self.message_user(
            request,
            f"Paused {changed} collection(s); {selected - changed} were already paused. "
            "Documents in flight finish; nothing more is claimed until resumed.",
            messages.SUCCESS,
        )

    @admin.action(description="Resume selected collections", permissions=["pause"])
    def resume_collections(self, request: HttpRequest, queryset: QuerySet[Collection]) -> None:
        selected, changed = len(queryset), queryset.resume()
        self.message_user(
            request, f"Resumed {changed} collection(s); {selected - changed} were not paused.", messages.SUCCESS
        )

    @admin.action(description="Re-embed selected collections (requeue all their documents)", permissions=["reembed"])
    def reembed_collections(self, request: HttpRequest, queryset: QuerySet[Collection]) -> None:
        requeued = backfill.reembed(queryset)
        self.message_user(
            request,
            f"Requeued {requeued} document(s) of {len(queryset)} collection(s) for re-embedding; "
            "pending and in-flight documents were already queued.",
            messages.SUCCESS,
        )

    def get_urls(self) -> list[URLPattern]:
        overview = path("overview/", self.admin_site.admin_view(self.overview_view), name="pipeline_overview")
        slos = path("slos/", self.admin_site.admin_view(self.slos_view), name="pipeline_slos")
        return [overview, slos, *super().get_urls()]

    def slos_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("pipeline.view_collectionactivity"):
            raise PermissionDenied
        seen = Collection.objects.visible_to(request.user)
        seen_ids = set(seen.values_list("pk", flat=True))
        try:
            figures = slo_page.figures(
                request.GET.get("range", slo_page.DEFAULT_RANGE),
                request.GET.get("collection") or None,
                user=request.user,
            )
        except slo_page.BadRequest as exc:
            self.message_user(request, f"{exc.parameter}: {exc}", messages.ERROR)
            figures = slo_page.figures()
        context = {
            **self.admin_site.each_context(request),
            "title": "SLOs and capacity",
            "figures": figures,
            "slo_rows": slo_page.table(figures),
            # Which SLOs the burn-rate alerts watch: the performance SLOs alert on their compliance instead.
            "event_slos": [s.name for s in slos.spec().slos],
            "performance_slos": list(slos.performance()),
            "retrieval": [run for run in quality.latest() if run.collection_id in seen_ids],
            "ranges": list(slo_page.RANGES),
            "collections": seen.order_by("name").values_list("name", flat=True),
        }
        return TemplateResponse(request, "admin/pipeline/slos.html", context)

    def overview_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("pipeline.view_document"):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            **overview.context(Collection.objects.visible_to(request.user), request.user),
            "title": "Pipeline overview",
        }
        return TemplateResponse(request, "admin/pipeline/overview.html", context)


class EnqueueDocumentForm(forms.ModelForm):
    """Adding a document in the admin enqueues it like the API does (hash, change detection)."""

    class Meta:
        model = Document
        fields = ("collection", "external_id", "text", "metadata", "source_modified_at")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        try:
            queue.validate(self.incoming(data), data["collection"].contextual_chunks)
        except queue.InvalidDocument as exc:
            raise forms.ValidationError(str(exc)) from None
        # Enqueueing an existing id is an update, not a conflict: validate against the stored row
        # (so the unique constraint check skips it); save_model still goes through queue.enqueue.
        existing = Document.objects.filter(collection=data["collection"], external_id=data["external_id"]).first()
        if existing is not None:
            self.instance = existing
        return data

    @staticmethod
    def incoming(data: dict[str, Any]) -> queue.IncomingDocument:
        return queue.IncomingDocument(
            data["external_id"], data["text"], data.get("source_modified_at"), data.get("metadata") or {}
        )


@admin.register(Document)
class DocumentAdmin(TeamScoped, AuditedAdmin):
    formfield_overrides = BOUNDED_JSON
    list_display = (
        "external_id",
        "collection",
        "status",
        "attempts",
        "available_at",
        "last_error",
        "last_embedded_at",
        "lease_owner",
        "lease_expires_at",
        "updated_at",
    )
    list_filter = ("status", ("collection", TeamCollectionFilter))
    search_fields = ("external_id", "content_hash")
    list_select_related = ("collection",)
    show_full_result_count = False  # big table: skip COUNT(*)
    actions = ("requeue_documents",)
    # A document changes only through the queue: its change page shows every field read-only.
    readonly_fields = [field.name for field in Document._meta.fields if field.name != "id"]

    has_requeue_permission = holds("pipeline.requeue_document")

    @admin.action(description="Requeue selected documents (embedded or failed)", permissions=["requeue"])
    def requeue_documents(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        selected = len(queryset)
        requeued = queryset.requeue()
        self.message_user(
            request,
            f"Requeued {requeued} document(s); {selected - requeued} skipped (already pending or processing).",
            messages.SUCCESS if requeued else messages.WARNING,
        )

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[list, dict, set, list]:
        return deletion_summary(self, request, objs, "document", Chunk)

    # Deleting locks the rows first, as the API's DELETE does (DocumentQuerySet.remove).
    def delete_model(self, request: HttpRequest, obj: Document) -> None:
        Document.objects.filter(pk=obj.pk).remove()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        queryset.remove()

    def get_form(self, request: HttpRequest, obj: Document | None = None, **kwargs: Any) -> type[forms.ModelForm]:
        if obj is None:
            kwargs["form"] = EnqueueDocumentForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Document | None = None) -> Any:
        return () if obj is None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: Document, form: forms.ModelForm, change: bool) -> None:
        if change:
            return
        data = form.cleaned_data
        result = queue.enqueue(data["collection"], [EnqueueDocumentForm.incoming(data)], source="admin")
        state = "queued" if (result.created or result.updated) else "unchanged (not re-embedded)"
        if result.stale:
            state = "not applied: the stored version is newer (modified_at)"
        # The admin's log, audit trail and redirect then name the row as stored.
        obj.pk = Document.objects.get(collection=data["collection"], external_id=data["external_id"]).pk
        obj.refresh_from_db()
        self.message_user(request, f"Document {obj.external_id} {state}.", messages.SUCCESS)


@admin.register(Chunk)
class ChunkAdmin(TeamScoped, ReadOnlyAdmin):
    list_display = ("document", "ordinal", "token_count", "dimensions", "preview")
    list_select_related = ("document", "document__collection")
    list_filter = (("collection", TeamCollectionFilter),)
    search_fields = ("document__external_id",)
    show_full_result_count = False
    # Never render the raw vector: it is long and says nothing to a person.
    fields = ("document", "collection", "ordinal", "token_count", "dimensions", "text")

    @admin.display(description="dimensions")
    def dimensions(self, obj: Chunk) -> int:
        return len(obj.embedding) if obj.embedding is not None else 0

    @admin.display(description="text")
    def preview(self, obj: Chunk) -> str:
        return obj.text[:80]
