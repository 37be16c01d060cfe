"""Collections: what producers configure, and the rules on their names and settings."""

from __future__ import annotations

from datetime import timedelta
from functools import reduce
from operator import or_
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models, transaction
from django.db.models import F, Q
from django.db.models.functions import Lower
from django.utils import timezone

from embedportal.printable import unsafe_character
from pipeline import providers
from pipeline.choices import ChunkingStrategy, ChunkUnit, Fusion, SearchMode
from pipeline.chunking import overlap_problem
from pipeline.models import rules

# Named here by the migrations (validators) and by storage and create_collection (HNSW defaults, dimensions).
from pipeline.models.rules import (
    DIMENSIONS_RANGE,
    HNSW_EF_CONSTRUCTION_DEFAULT,
    HNSW_M_DEFAULT,
    NAME_CASE,
    validate_api_base,
    validate_extra_params,
)
from pipeline.wakeup import wake_workers


def default_freshness_sla() -> timedelta:
    return settings.EMBEDPORTAL_FRESHNESS_SLA


# Platform operators see every collection: superusers and holders of this permission (the
# "operators" group bootstrap creates). Everyone else sees their teams' collections only.
ACCESS_ALL = "pipeline.access_all_collections"


def sees_all_collections(user: Any) -> bool:
    """None is the platform itself (a command run without --as-user, a worker, a schedule)."""
    return user is None or user.has_perm(ACCESS_ALL)


def visible(user: Any, path: str = "") -> Q:
    """The one rule for what `user` may see, as a filter on rows reaching a collection through
    `path` (e.g. "document__collection"; "" for collections): a collection of one of the user's
    teams. A collection without a team is the platform's: operators only."""
    if sees_all_collections(user):
        return Q()
    return Q(**{f"{path}__team__in" if path else "team__in": user.groups.all()})


SIZING = ("model", "chunk_unit", "chunk_size")
# Rules judged only when their field is set (a create, a rename, a re-embed), against the stored row: a
# collection stored before a rule keeps working through other changes.
JUDGED_WHEN_SET = ("name", "rerank_model", *SIZING)


class CollectionQuerySet(models.QuerySet["Collection"]):
    def visible_to(self, user: Any) -> CollectionQuerySet:
        return self.filter(visible(user))

    def user_collections(self) -> CollectionQuerySet:
        """All but the reserved scratch collections (Collection.is_reserved): their figures are not user traffic."""
        return self.exclude(reduce(or_, (Q(name__istartswith=prefix) for prefix in rules.RESERVED_PREFIXES)))

    # Compare-and-swap: the row count says how many actually changed state, so the admin,
    # the API and a racing operator agree on what happened.
    def pause(self) -> int:
        return self.filter(paused=False).update(paused=True, updated_at=timezone.now())

    def resume(self) -> int:
        """Unpause; their pending documents are claimable again, so workers are woken after commit."""
        return wake_workers(self.filter(paused=True).update(paused=False, updated_at=timezone.now()), self.db)


def api_base_field(label: str, help_text: str) -> models.URLField:
    """A provider's api_base: never with credentials in it (the key's variable is named beside it)."""
    return models.URLField(label, max_length=500, blank=True, validators=[validate_api_base], help_text=help_text)


def key_variable_field(label: str, help_text: str) -> models.CharField:
    """The name of the environment variable holding a provider's key, never the key."""
    return models.CharField(label, max_length=100, blank=True, validators=[rules.ENV_NAME], help_text=help_text)


class Collection(models.Model):
    """A named set of documents embedded with one model into one HNSW index."""

    name = models.SlugField(max_length=63, unique=True)
    team = models.ForeignKey(
        "auth.Group",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="collections",
        help_text="The team that owns it: only its members (and platform operators) see the collection and "
        "everything in it. Empty: the platform's own, seen by operators only.",
    )
    model = models.CharField(
        "embedding model",
        max_length=200,
        default="local/all-MiniLM-L6-v2",
        help_text="A LiteLLM model string, e.g. local/all-MiniLM-L6-v2 or openai/text-embedding-3-small.",
    )
    api_base = api_base_field(
        "API base", "LiteLLM api_base, if any; never with credentials in it (name the key's variable below)."
    )
    api_key_env = key_variable_field(
        "API key variable",
        "Name of the environment variable holding the provider API key; NAME_FILE is read "
        "first (mounted secrets). The key itself is never stored.",
    )
    extra_params = models.JSONField(
        "extra parameters",
        default=dict,
        blank=True,
        help_text='Extra LiteLLM embedding parameters, e.g. {"dimensions": 256}.',
        validators=[validate_extra_params],
    )
    dimensions = models.PositiveIntegerField(validators=rules.between(*DIMENSIONS_RANGE))
    chunking_strategy = models.CharField(
        max_length=20, choices=ChunkingStrategy.choices, default=ChunkingStrategy.RECURSIVE
    )
    chunk_unit = models.CharField(max_length=12, choices=ChunkUnit.choices, default=ChunkUnit.TOKENS)
    chunk_size = models.PositiveIntegerField(default=256, validators=[MinValueValidator(rules.CHUNK_SIZE_MIN)])
    chunk_overlap = models.PositiveIntegerField(default=32)
    contextual_chunks = models.BooleanField(
        default=True,
        help_text="Embed each chunk after its document's title and heading path (the stored text is unchanged) "
        "and leave YAML front matter out of chunks. Changed only by a re-embed.",
    )
    batch_size = models.PositiveIntegerField(
        "embedding batch size",
        default=64,
        validators=rules.between(*rules.BATCH_SIZE_RANGE),
        help_text="Most chunks sent in one embedding call.",
    )
    provider_concurrency = models.PositiveSmallIntegerField(
        "provider concurrency",
        default=1,
        validators=rules.between(1, 32),
        help_text="Embedding calls a worker makes at once for one batch (1 to 32) with a remote provider, "
        "whose time is mostly waiting; local models always make one. The provider's rate limit caps it: "
        "429 answers mean lower it.",
    )
    freshness_sla = models.DurationField(default=default_freshness_sla)
    # Guardrails: a spend budget (pipeline.costs) and provider rate limits across workers (pipeline.ratelimits).
    monthly_budget_usd = models.FloatField(
        "monthly budget (USD)",
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Embedding spend allowed per calendar month (UTC); an alert fires when the month's pace "
        "would exceed it. Empty: no budget.",
    )
    requests_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=rules.between(1, 1_000_000),
        help_text="Most embedding calls per minute for this collection, across every worker. Empty: no limit.",
    )
    tokens_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=rules.between(1, 1_000_000_000),
        help_text="Most input tokens per minute for this collection, across every worker. Empty: no limit.",
    )
    # The HNSW index's build parameters (pipeline.storage.index_definition): every index the
    # collection gets is built with them; a change rebuilds it (pipeline.backfill.rebuild_index).
    hnsw_m = models.PositiveSmallIntegerField(
        "HNSW m",
        default=HNSW_M_DEFAULT,
        validators=rules.between(*rules.HNSW_M_RANGE),
        help_text="Neighbours per graph node (pgvector: 2 to 100, default 16). Fewer: faster inserts and "
        "builds, lower recall. A change rebuilds the index.",
    )
    hnsw_ef_construction = models.PositiveSmallIntegerField(
        "HNSW ef_construction",
        default=HNSW_EF_CONSTRUCTION_DEFAULT,
        validators=rules.between(*rules.HNSW_EF_CONSTRUCTION_RANGE),
        help_text="Candidates considered per insert (pgvector: 4 to 1000 and at least 2 * m, default 64). "
        "Fewer: faster inserts and builds, lower recall. A change rebuilds the index.",
    )
    ef_search = models.PositiveSmallIntegerField(
        "HNSW ef_search",
        null=True,
        blank=True,
        validators=rules.between(*rules.EF_SEARCH_RANGE),
        help_text="Candidates a search visits (pgvector: 1 to 1000); never fewer than k. Empty: max(40, 2k).",
    )
    search_mode = models.CharField(
        max_length=10,
        choices=SearchMode.choices,
        default=SearchMode.HYBRID,
        help_text="How search ranks chunks when a request does not say (docs/search.md has the measurements).",
    )
    keyword_weight = models.FloatField(
        default=rules.KEYWORD_WEIGHT_DEFAULT,
        validators=rules.between(0.0, 1.0),
        help_text="Hybrid search: the keyword ranking's share (0 to 1); the vector ranking has the rest.",
    )
    fusion = models.CharField(max_length=10, choices=Fusion.choices, default=Fusion.RRF)
    # Optional reranking of search's best candidates (pipeline.rerank); the key rules of api_base hold.
    rerank_model = models.CharField(
        max_length=200,
        blank=True,
        help_text="A LiteLLM rerank model (e.g. cohere/rerank-english-v3.0) reordering search's best 50 candidates. "
        "Empty: no reranking.",
    )
    rerank_api_base = api_base_field(
        "rerank API base",
        "The reranker's api_base, if any; never with credentials in it (name the key's variable below).",
    )
    rerank_api_key_env = key_variable_field(
        "rerank API key variable",
        "Name of the environment variable holding the reranker's API key (NAME_FILE read first).",
    )
    retrieval_target = models.FloatField(
        "recall@5 target",
        default=rules.RETRIEVAL_TARGET_DEFAULT,
        validators=rules.between(0.0, 1.0),
        help_text="The retrieval quality SLO: recall@5 of the golden queries at or above this.",
    )
    paused = models.BooleanField(default=False, help_text="Paused collections are not claimed by workers.")
    # Generations: search reads `generation` while a load or re-embed writes `building_generation` (pipeline.backfill).
    generation = models.PositiveIntegerField(default=1, editable=False, help_text="The chunk generation search reads.")
    building_generation = models.PositiveIntegerField(
        null=True,
        blank=True,
        editable=False,
        help_text="A generation being written without its HNSW index (first load or re-embed), if any.",
    )
    serving = models.JSONField(
        null=True,
        blank=True,
        editable=False,
        help_text="While a re-embed runs: the model configuration search embeds queries with (the old one).",
    )
    local_encoder = models.CharField(
        "local model runtime",
        max_length=40,
        blank=True,
        editable=False,
        help_text="The runtime/precision that wrote the local model's latest vectors (pipeline.encoder), e.g. "
        "openvino/int8. A runtime serves only after passing the faithfulness gate; a change of runtime "
        "re-embeds the collection only if the new one fails its golden queries (runtime_gate).",
    )
    runtime_gate = models.JSONField(
        null=True,
        blank=True,
        editable=False,
        help_text="The last change of the local model's runtime: the collection's golden queries searched with "
        "the new runtime's query vectors and PyTorch's (recall@5, MRR@10), and whether it re-embedded.",
    )
    last_claimed_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Claims go round-robin, least recently claimed first."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CollectionQuerySet.as_manager()

    # What a query vector depends on, and everything the vectors depend on: what a re-embed may change
    # (pipeline.backfill), kept in `serving` while it runs (search's model; evaluations' labels).
    SERVING_FIELDS = ("model", "api_base", "api_key_env", "extra_params", "dimensions")
    # How the stored chunks were cut: once there are documents, changed alone it would cut only those
    # enqueued later the new way, a collection of two chunkings that says nothing of it. A re-embed changes them.
    CHUNKING_FIELDS = ("chunking_strategy", "chunk_unit", "chunk_size", "chunk_overlap")
    REEMBED_FIELDS = (*SERVING_FIELDS, *CHUNKING_FIELDS, "contextual_chunks", "batch_size")

    # Written only by pipeline.backfill (its compare-and-swap updates, begin_reembed under the row lock):
    # a collection loaded before a re-embed switched and saved after (a PATCH, the admin form) would put
    # back the generation whose chunks were deleted.
    GENERATION_FIELDS = ("generation", "building_generation", "serving")
    # What producers and operators set; the admin form and the API serializer both use it.
    EDITABLE_FIELDS = (
        "name",
        "team",
        *REEMBED_FIELDS,
        *("provider_concurrency", "freshness_sla", "monthly_budget_usd", "requests_per_minute", "tokens_per_minute"),
        *("paused", "hnsw_m", "hnsw_ef_construction", "ef_search"),
        *("search_mode", "keyword_weight", "fusion", "rerank_model", "rerank_api_base", "rerank_api_key_env"),
        "retrieval_target",
    )

    class Meta:
        ordering = ["name"]
        permissions = [
            ("pause_collection", "Can pause and resume collections"),
            ("reembed_collection", "Can re-embed a collection"),
            ("access_all_collections", "Can see every team's collections (platform operator)"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(chunk_overlap__lt=F("chunk_size")), name="pipeline_collection_overlap_lt_size"
            ),
            # pgvector's own rule, checked before an index build could fail on it.
            models.CheckConstraint(
                condition=Q(hnsw_ef_construction__gte=F("hnsw_m") * 2),
                name="pipeline_collection_hnsw_ef_construction_ge_2m",
            ),
            # A person reads "ALPHA" and "alpha" as one collection; the race problems() cannot close.
            models.UniqueConstraint(
                Lower("name"), name="pipeline_collection_name_unique_any_case", violation_error_message=NAME_CASE
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, **kwargs: Any) -> None:
        if self._state.adding or kwargs.get("force_insert"):
            super().save(**kwargs)
            return
        fields = kwargs.get("update_fields")
        if fields is None:
            fields = [f.name for f in self._meta.concrete_fields if not f.primary_key]
        super().save(**{**kwargs, "update_fields": [f for f in fields if f not in self.GENERATION_FIELDS]})
        # What the database holds, for whoever shows the instance next (a PATCH's response, the admin).
        self.refresh_from_db(fields=self.GENERATION_FIELDS)

    def has_documents(self) -> bool:
        return self.pk is not None and self.documents.exists()

    def problems(self) -> dict[str, str]:
        """The collection rules every entry point applies with the same messages: the admin and the
        commands through clean(), the API serializer on the collection its request would leave."""
        provider = providers.provider_of(self.model or "")
        local = provider == "local"
        # A new collection (no pk) is judged without a query; a stored one with one read of its row.
        stored = (self.pk and Collection.objects.filter(pk=self.pk).values(*JUDGED_WHEN_SET).first()) or {}
        found = {
            "name": self._name_problem(stored),
            # Model strings reach logs, terminals, metric labels and alert texts as they are.
            "model": self._model_problem("model", stored),
            "rerank_model": self._model_problem("rerank_model", stored),
            "extra_params": rules.params_problem(self.model, local, self.extra_params, self.dimensions),
            "api_base": rules.local_endpoint_problem(self.model, local, "api_base", self.api_base)
            or rules.api_base_host_problem(self.api_base)
            or rules.default_endpoint_problem(provider, self.api_base, self.api_key_env),
            "rerank_api_base": rules.api_base_host_problem(self.rerank_api_base)
            or (
                self.rerank_model
                and rules.default_endpoint_problem(
                    providers.provider_of(self.rerank_model), self.rerank_api_base, self.rerank_api_key_env
                )
            ),
            "freshness_sla": rules.freshness_sla_problem(self.freshness_sla),
            # The CHECK constraint pipeline_collection_overlap_lt_size, said in words.
            "chunk_overlap": None
            if self.chunk_size is None or self.chunk_overlap is None
            else overlap_problem(self.chunk_size, self.chunk_overlap),
            "chunk_size": self._chunk_size_problem(stored),
            "hnsw_ef_construction": rules.hnsw_build_problem(self.hnsw_m, self.hnsw_ef_construction),
            "api_key_env": rules.local_endpoint_problem(self.model, local, "api_key_env", self.api_key_env)
            or rules.key_host_problem(self.api_base, self.api_key_env)
            or rules.key_team_problem(self.api_key_env, self),
            "rerank_api_key_env": rules.key_host_problem(self.rerank_api_base, self.rerank_api_key_env)
            or rules.key_team_problem(self.rerank_api_key_env, self),
        }
        return {field: problem for field, problem in found.items() if problem}

    def _model_problem(self, field: str, stored: dict[str, Any]) -> str | None:
        """A model string set now is a model name; one stored before that rule keeps it (a re-embed sets it)."""
        value = getattr(self, field) or ""
        return unsafe_character(value) if stored.get(field) == value else rules.model_name_problem(value)

    def _name_problem(self, stored: dict[str, Any]) -> str | None:
        if not self.name or stored.get("name") == self.name:
            return None
        # The same name exactly is the unique field's own error.
        others = Collection.objects.filter(name__iexact=self.name).exclude(name=self.name).exclude(pk=self.pk)
        return rules.reserved_name_problem(self.name) or (NAME_CASE if others.exists() else None)

    def _chunk_size_problem(self, stored: dict[str, Any]) -> str | None:
        """A size the model cannot read: judged when the model, unit or size is set (a create, a re-embed)."""
        sizing = (self.model, self.chunk_unit, self.chunk_size)
        changed = tuple(stored.get(field) for field in SIZING) != sizing
        return providers.size_problem(*sizing) if self.chunk_size and changed else None

    def clean(self) -> None:
        if problems := self.problems():
            raise ValidationError(problems)

    @property
    def index_name(self) -> str:
        return f"pipeline_chunk_hnsw_{self.pk}"

    @property
    def is_reserved(self) -> bool:
        """A scratch collection (operations tests, capacity): kept out of every metric and SLO figure."""
        return rules.is_reserved_name(self.name)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        # Set-wise raw DELETEs: tables referencing pipeline_document must cascade in the database
        # (docs/architecture.md, "pipeline/models/collection.py").
        with transaction.atomic():
            # One delete at a time: two at once deadlocked on their chunk deletes and index drops (a 503).
            # The second waits here, then finds the row gone.
            if not Collection.objects.select_for_update().filter(pk=self.pk).exists():
                return 0, {}
            # By name: document.py imports this module.
            for model in ("Chunk", "Document"):
                apps.get_model("pipeline", model).objects.filter(collection=self)._raw_delete(using="default")
            return super().delete(*args, **kwargs)
