"""The system of record: collections, the documents queued into them, and their chunks."""

from __future__ import annotations

import os
import socket
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import connections, models, transaction
from django.db.models import F, Func, Min, Q, Value
from django.utils import timezone
from pgvector.django import VectorField

from pipeline.choices import (
    ChunkingStrategy,
    ChunkUnit,
    CircuitState,
    DocumentStatus,
    ErrorType,
    OptimizationStatus,
    WorkerRole,
)
from pipeline.metrics import FRESHNESS_BUCKETS, LATENCY_BUCKETS
from pipeline.tasks import kick_workers

ENV_NAME = RegexValidator(r"^[A-Za-z_][A-Za-z0-9_]*$", "Use the name of an environment variable, not a key.")


# LiteLLM parameters that carry credentials (api_key, aws_secret_access_key, vertex_credentials,
# azure_ad_token, ...): keys belong in the environment, named by api_key_env, never in the database.
SECRET_PARAM_PARTS = {"key", "secret", "token", "password", "credential", "credentials"}


def validate_extra_params(value: Any) -> None:
    """LiteLLM parameters: an object, `dimensions` a size pgvector can index, never a credential."""
    if not isinstance(value, dict):
        raise ValidationError('must be a JSON object, e.g. {"dimensions": 256}')
    wanted = value.get("dimensions")
    if wanted is not None and (isinstance(wanted, bool) or not isinstance(wanted, int) or not 1 <= wanted <= 16000):
        raise ValidationError("dimensions must be an integer from 1 to 16000")
    secret = sorted(k for k in value if SECRET_PARAM_PARTS & set(str(k).lower().split("_")))
    if secret:
        raise ValidationError(
            f"{', '.join(secret)}: never store credentials here; name the environment variable in api_key_env"
        )


def dimensions_mismatch(extra_params: Any, dimensions: int | None) -> str | None:
    """extra_params.dimensions is what the provider is asked for; another size than the
    collection's would fail every batch at the quality gate."""
    wanted = extra_params.get("dimensions") if isinstance(extra_params, dict) else None
    if wanted is not None and dimensions and wanted != dimensions:
        return f"dimensions {wanted} differs from the collection's {dimensions}"
    return None


# Collection names under this prefix belong to the operations tester (the testing app), which
# sets `reserved_names_allowed` around its own calls; producers and operators cannot create them.
RESERVED_PREFIX = "__ops_test_"
# measure_capacity's scratch collections (pipeline.capacity), reserved the same way.
CAPACITY_PREFIX = "__capacity_"
RESERVED_PREFIXES = (RESERVED_PREFIX, CAPACITY_PREFIX)
reserved_names_allowed: ContextVar[bool] = ContextVar("reserved_names_allowed", default=False)


def reserved_name_problem(name: str | None) -> str | None:
    if name and not reserved_names_allowed.get():
        if name.lower().startswith(RESERVED_PREFIX):
            return f"names starting with {RESERVED_PREFIX} are reserved for the operations tests"
        if name.lower().startswith(CAPACITY_PREFIX):
            return f"names starting with {CAPACITY_PREFIX} are reserved for capacity measurements"
    return None


def freshness_sla_problem(value: timedelta | None) -> str | None:
    """A freshness SLA is a positive duration: how long after a source change its embedding may lag."""
    if value is not None and value <= timedelta(0):
        return "must be a positive duration, e.g. 01:00:00 for one hour"
    return None


def default_freshness_sla() -> timedelta:
    return settings.EMBEDPORTAL_FRESHNESS_SLA


def wake_workers(changed: int, using: str) -> int:
    """A transition that creates work changed `changed` rows: start drain tasks once it commits.

    Without this, work created outside `queue.enqueue` (a requeue by `reprocess_failed` or
    `detect_stale`, a resume) waited for the every-minute drain schedule. Returns `changed`.
    """
    if changed:
        transaction.on_commit(kick_workers, using=using)
    return changed


class CollectionQuerySet(models.QuerySet["Collection"]):
    # Compare-and-swap: the row count says how many actually changed state, so the admin,
    # the API and a racing operator agree on what happened.
    def pause(self) -> int:
        return self.filter(paused=False).update(paused=True, updated_at=timezone.now())

    def resume(self) -> int:
        """Unpause; their pending documents are claimable again, so workers are woken after commit."""
        return wake_workers(self.filter(paused=True).update(paused=False, updated_at=timezone.now()), self.db)

    def reembed(self) -> int:
        """Re-embed these collections into a new generation, searched from the old one until it is
        complete and indexed (pipeline.backfill); returns documents requeued."""
        from pipeline import backfill  # it imports these models

        return sum(backfill.begin_reembed(collection) for collection in self)


class Collection(models.Model):
    """A named set of documents embedded with one model into one HNSW index."""

    name = models.SlugField(max_length=63, unique=True)
    model = models.CharField(
        "embedding model",
        max_length=200,
        default="local/all-MiniLM-L6-v2",
        help_text="A LiteLLM model string, e.g. local/all-MiniLM-L6-v2 or openai/text-embedding-3-small.",
    )
    api_base = models.URLField("API base", max_length=500, blank=True, help_text="LiteLLM api_base, if any.")
    api_key_env = models.CharField(
        "API key variable",
        max_length=100,
        blank=True,
        validators=[ENV_NAME],
        help_text="Name of the environment variable holding the provider API key; NAME_FILE is read "
        "first (mounted secrets). The key itself is never stored.",
    )
    extra_params = models.JSONField(
        "extra parameters",
        default=dict,
        blank=True,
        help_text='Extra LiteLLM embedding parameters, e.g. {"dimensions": 256}.',
        validators=[validate_extra_params],
    )
    dimensions = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(16000)])
    chunking_strategy = models.CharField(
        max_length=20, choices=ChunkingStrategy.choices, default=ChunkingStrategy.RECURSIVE
    )
    chunk_unit = models.CharField(max_length=12, choices=ChunkUnit.choices, default=ChunkUnit.TOKENS)
    chunk_size = models.PositiveIntegerField(default=256, validators=[MinValueValidator(8)])
    chunk_overlap = models.PositiveIntegerField(default=32)
    batch_size = models.PositiveIntegerField(
        "embedding batch size",
        default=64,
        validators=[MinValueValidator(1), MaxValueValidator(2048)],
        help_text="Most chunks sent in one embedding call.",
    )
    freshness_sla = models.DurationField(default=default_freshness_sla)
    paused = models.BooleanField(default=False, help_text="Paused collections are not claimed by workers.")
    # Generations (pipeline.backfill): search reads `generation`; a first load or a re-embed writes
    # `building_generation` without an HNSW index, built once when its documents are all processed,
    # then switched to in one transaction (zero-downtime model change).
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
    last_claimed_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Claims go round-robin, least recently claimed first."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CollectionQuerySet.as_manager()

    # What producers and operators set; the admin form and the API serializer both use it.
    EDITABLE_FIELDS = (
        "name",
        "model",
        "api_base",
        "api_key_env",
        "extra_params",
        "dimensions",
        "chunking_strategy",
        "chunk_unit",
        "chunk_size",
        "chunk_overlap",
        "batch_size",
        "freshness_sla",
        "paused",
    )

    class Meta:
        ordering = ["name"]
        permissions = [
            ("pause_collection", "Can pause and resume collections"),
            ("reembed_collection", "Can re-embed a collection"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(chunk_overlap__lt=F("chunk_size")), name="pipeline_collection_overlap_lt_size"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """The collection rules every entry point applies with the same messages: the admin and
        the commands through full_clean(), the API serializer by calling the same functions."""
        from pipeline.chunking import overlap_problem  # chunking is imported by the models' users

        errors = {}
        if problem := reserved_name_problem(self.name):
            errors["name"] = problem
        if problem := dimensions_mismatch(self.extra_params, self.dimensions):
            errors["extra_params"] = problem
        if problem := freshness_sla_problem(self.freshness_sla):
            errors["freshness_sla"] = problem
        if self.chunk_size is not None and self.chunk_overlap is not None:
            # Also the CHECK constraint pipeline_collection_overlap_lt_size; said here in words.
            if problem := overlap_problem(self.chunk_size, self.chunk_overlap):
                errors["chunk_overlap"] = problem
        if errors:
            raise ValidationError(errors)

    @property
    def index_name(self) -> str:
        return f"pipeline_chunk_hnsw_{self.pk}"

    @property
    def is_reserved(self) -> bool:
        """A scratch collection of the operations tests or a capacity measurement: the workers keep
        its batches out of the shared Prometheus metrics and the history, where its injected faults
        and bursts would fire real alerts and count against the SLOs."""
        return self.name.lower().startswith(RESERVED_PREFIXES)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        # Delete chunks and documents set-wise first: Django's cascade collector would load
        # every row of a large collection into memory. A raw DELETE skips Django's on_delete,
        # so every table referencing pipeline_document must cascade in the database itself:
        # reprocessing's failed_documents does (ON DELETE CASCADE, added by
        # reprocessing/migrations/0002_document_fk_on_delete_cascade.py); an app adding a
        # foreign key to Document must do the same, or this DELETE fails on its rows.
        with transaction.atomic():
            Chunk.objects.filter(collection=self)._raw_delete(using="default")
            Document.objects.filter(collection=self)._raw_delete(using="default")
            return super().delete(*args, **kwargs)


# The claim's first step: unpaused collections with work due, whose provider endpoint's circuit is
# closed (or, for a probe, the one endpoint probed), least recently claimed first. Each subquery is
# an index probe: the collection's first pending row in pipeline_document_pending_coll (ORDER BY ...
# LIMIT 1 keeps the planner on it whatever the statistics), an expired lease in
# pipeline_document_leased; so the choice costs the same at any backlog. Collections are tens of rows.
_NEXT_COLLECTIONS_SQL = """
SELECT c.id FROM pipeline_collection c
 WHERE NOT c.paused
   AND {endpoint}
   AND ((SELECT d.available_at FROM pipeline_document d
          WHERE d.collection_id = c.id AND d.status = 'pending'
          ORDER BY d.available_at LIMIT 1) <= %(now)s
        OR EXISTS (SELECT 1 FROM pipeline_document d
                    WHERE d.collection_id = c.id AND d.status = 'processing' AND d.lease_expires_at < %(now)s))
 ORDER BY c.last_claimed_at NULLS FIRST, c.id
 LIMIT %(candidates)s
"""
_CIRCUIT_CLOSED = """NOT EXISTS (SELECT 1 FROM pipeline_providercircuit p
                    WHERE p.model = c.model AND p.api_base = c.api_base AND p.state <> 'closed')"""
_ENDPOINT = "c.model = %(model)s AND c.api_base = %(api_base)s"
# Collections tried per claim when the first ones' due rows are all locked by concurrent claimers.
CLAIM_CANDIDATES = 4


class DocumentQuerySet(models.QuerySet["Document"]):
    def claimable(self, now: datetime | None = None) -> DocumentQuerySet:
        """Pending documents and those whose worker's lease expired, in unpaused collections."""
        now = now or timezone.now()
        return self.filter(
            Q(status=DocumentStatus.PENDING, available_at__lte=now)
            | Q(status=DocumentStatus.PROCESSING, lease_expires_at__lt=now),
            collection__paused=False,
        )

    def claim(
        self, worker: str, limit: int, lease: timedelta, endpoint: ProviderCircuit | None = None
    ) -> list[Document]:
        """Lease up to `limit` documents of one collection to `worker`.

        Fair across collections: each claim serves the least recently claimed collection with
        work due, so a large backlog in one cannot starve the others, and one batch never mixes
        a failing provider's documents with a healthy one's. Collections whose provider circuit
        is open or half-open are skipped (their documents wait, pending); `endpoint` claims for
        that circuit's half-open probe instead. SKIP LOCKED lets concurrent workers take disjoint
        rows without waiting on each other; the lease makes a dead worker's claim claimable
        again once it expires.
        """
        now = timezone.now()
        with transaction.atomic(using=self.db):
            for collection_id in self._next_collections(now, endpoint):
                ids = self._lock_due(collection_id, now, limit)
                if ids:
                    break
            else:
                return []
            self.filter(pk__in=ids).update(
                status=DocumentStatus.PROCESSING,
                lease_owner=worker,
                lease_expires_at=now + lease,
                attempts=F("attempts") + 1,
                updated_at=now,
            )
            Collection.objects.using(self.db).filter(pk=collection_id).update(last_claimed_at=now)
        return list(self.filter(pk__in=ids, lease_owner=worker).select_related("collection").order_by("id"))

    def _next_collections(self, now: datetime, endpoint: ProviderCircuit | None) -> list[int]:
        params: dict[str, Any] = {"now": now, "candidates": CLAIM_CANDIDATES}
        if endpoint is None:
            sql = _NEXT_COLLECTIONS_SQL.format(endpoint=_CIRCUIT_CLOSED)
        else:
            sql = _NEXT_COLLECTIONS_SQL.format(endpoint=_ENDPOINT)
            params.update(model=endpoint.model, api_base=endpoint.api_base)
        with connections[self.db].cursor() as cur:
            cur.execute(sql, params)
            return [row[0] for row in cur.fetchall()]

    def _lock_due(self, collection_id: int, now: datetime, limit: int) -> list[int]:
        """Lock up to `limit` of the collection's claimable rows: expired leases first (older work),
        then pending ones, first available first. Two queries, each served by its partial index
        with no sort (an OR of both would read and sort the whole backlog)."""
        mine = self.filter(collection_id=collection_id).order_by()
        ids = list(
            mine.filter(status=DocumentStatus.PROCESSING, lease_expires_at__lt=now)
            .order_by("lease_expires_at")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        if len(ids) < limit:
            ids += list(
                mine.filter(status=DocumentStatus.PENDING, available_at__lte=now)
                .order_by("available_at", "id")
                .select_for_update(skip_locked=True)
                .values_list("pk", flat=True)[: limit - len(ids)]
            )
        return ids

    def stranded(self, alive_processes: list[str], now: datetime | None = None) -> DocumentQuerySet:
        """Leased documents nobody works on: their lease expired, or their worker's process (host:pid,
        the start of its worker id) has no fresh heartbeat, i.e. it was killed and its lease has not
        run out yet. They are pending work, whatever their status says."""
        process = Func(
            F("lease_owner"),
            Value(r"^([^:]*:[^:]*).*$"),
            Value(r"\1"),
            function="regexp_replace",
            output_field=models.CharField(),
        )
        return (
            self.filter(status=DocumentStatus.PROCESSING)
            .annotate(lease_process=process)
            .filter(Q(lease_expires_at__lt=now or timezone.now()) | ~Q(lease_process__in=alive_processes))
        )

    def due(self, now: datetime | None = None) -> DocumentQuerySet:
        """Pending documents past their backoff: the work waiting for a worker."""
        return self.filter(status=DocumentStatus.PENDING, available_at__lte=now or timezone.now())

    def oldest_due_at(self, now: datetime | None = None) -> datetime | None:
        """ "Oldest pending": when the longest-waiting due document became available (None if none).
        The oldest-pending gauge and the queue health check both read it (pipeline_document_pending)."""
        return self.due(now).aggregate(oldest=Min("available_at"))["oldest"]

    def owned_by(self, worker: str) -> DocumentQuerySet:
        return self.filter(status=DocumentStatus.PROCESSING, lease_owner=worker)

    def renew(self, worker: str, lease: timedelta) -> int:
        """Extend the worker's leases (a batch running longer than a lease is still alive)."""
        return self.owned_by(worker).update(lease_expires_at=timezone.now() + lease)

    def mark_failed(self, worker: str, error: str) -> int:
        return self.owned_by(worker).update(
            status=DocumentStatus.FAILED,
            lease_owner="",
            lease_expires_at=None,
            last_error=error[:2000],
            updated_at=timezone.now(),
        )

    def mark_embedded(self, worker: str, versions: list[tuple[int, str]], embedded_at: datetime) -> set[int]:
        """Compare-and-swap, set-wise: `versions` are (id, content hash) pairs a worker embedded.

        Only documents the worker still leases, and only for the version it embedded, become
        embedded (a document re-enqueued with new text meanwhile is refused). One statement
        for the batch; returns the ids it accepted. Call inside the transaction that writes
        their chunks.
        """
        if not versions:
            return set()
        ids, hashes = zip(*versions, strict=True)
        with connections[self.db].cursor() as cur:
            cur.execute(
                """
                UPDATE pipeline_document d
                   SET status = 'embedded', last_embedded_at = %s, lease_owner = '',
                       lease_expires_at = NULL, last_error = '', updated_at = now()
                  FROM unnest(%s::bigint[], %s::text[]) AS v(id, content_hash)
                 WHERE d.id = v.id AND d.content_hash = v.content_hash
                   AND d.status = 'processing' AND d.lease_owner = %s
             RETURNING d.id
                """,
                [embedded_at, list(ids), list(hashes), worker],
            )
            return {row[0] for row in cur.fetchall()}

    def release(self, worker: str) -> int:
        """Give the worker's leased documents back to the queue untouched (graceful shutdown)."""
        released = self.owned_by(worker).update(
            status=DocumentStatus.PENDING, lease_owner="", lease_expires_at=None, updated_at=timezone.now()
        )
        return wake_workers(released, self.db)

    def defer_until(self, worker: str, until: datetime, error: str) -> int:
        """Give the worker's leased documents back to the queue, not claimable before `until`:
        their provider is failing for every input (an outage, a rate limit), which is no fault
        of theirs. They stay pending; `last_error` says why they wait."""
        return self.owned_by(worker).update(
            status=DocumentStatus.PENDING,
            lease_owner="",
            lease_expires_at=None,
            available_at=until,
            last_error=error[:2000],
            updated_at=timezone.now(),
        )

    def requeue(self) -> int:
        """Send embedded or failed documents back to the queue and wake workers after commit.

        Every requeue goes through here: operator actions, re-embed, the reprocessing retry
        pass and the staleness pass.
        """
        now = timezone.now()
        requeued = self.filter(status__in=[DocumentStatus.EMBEDDED, DocumentStatus.FAILED]).update(
            status=DocumentStatus.PENDING,
            attempts=0,
            enqueued_at=now,
            available_at=now,
            updated_at=now,
            last_error="",
        )
        return wake_workers(requeued, self.db)


class Document(models.Model):
    """One version of a source document and its place in the pipeline."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="documents")
    external_id = models.CharField(max_length=512)
    text = models.TextField()
    content_hash = models.CharField(max_length=64, help_text="SHA-256 of the text.")
    metadata = models.JSONField(default=dict, blank=True)
    source_modified_at = models.DateTimeField(null=True, blank=True)
    last_embedded_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=DocumentStatus.choices, default=DocumentStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(default=timezone.now, help_text="When this version entered the queue.")
    available_at = models.DateTimeField(default=timezone.now, help_text="Not claimed before this time (backoff).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = DocumentQuerySet.as_manager()

    class Meta:
        permissions = [("requeue_document", "Can requeue documents")]
        constraints = [
            models.UniqueConstraint(fields=["collection", "external_id"], name="pipeline_document_unique_external_id"),
        ]
        indexes = [
            # Scanned by DocumentQuerySet.claim (first available first) and by queue-depth counts.
            models.Index(
                fields=["available_at", "id"], name="pipeline_document_pending", condition=Q(status="pending")
            ),
            # Scanned by DocumentQuerySet.claim for expired leases.
            models.Index(
                fields=["lease_expires_at"], name="pipeline_document_leased", condition=Q(status="processing")
            ),
            # Scanned by DocumentQuerySet.claim: a collection's first available pending documents,
            # and whether it has any due (the fair, per-collection claim).
            models.Index(
                fields=["collection", "available_at", "id"],
                name="pipeline_document_pending_coll",
                condition=Q(status="pending"),
            ),
            models.Index(fields=["collection", "status"], name="pipeline_document_status"),
            # Scanned by the throughput gauge (pipeline.metrics) and the queue health check
            # (pipeline.health): documents embedded in the last few minutes.
            models.Index(fields=["last_embedded_at"], name="pipeline_document_embedded_at"),
        ]

    def __str__(self) -> str:
        return f"{self.collection.name}/{self.external_id}" if self.collection_id else self.external_id


class Chunk(models.Model):
    """A piece of a document's text and its embedding.

    `embedding` has no fixed dimension: collections with different models share this table,
    and each collection's HNSW index is a partial expression index casting to its dimension.
    """

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    # Denormalised from the document: the per-collection partial HNSW index filters on it.
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="+")
    ordinal = models.PositiveIntegerField()
    text = models.TextField()
    token_count = models.PositiveIntegerField()
    embedding = VectorField()
    # Collection.generation is what search reads; a re-embed writes the next one beside it.
    generation = models.PositiveIntegerField(default=1, db_default=1)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["document", "generation", "ordinal"], name="pipeline_chunk_unique_generation_ordinal"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.ordinal}"


# The django-q2 heartbeat schedule beats every minute: two missed beats and slack before its row is dead.
SCHEDULE_MAX_AGE = timedelta(seconds=150)


def process_name() -> str:
    """host:pid, the key of a process's WorkerHeartbeat (pipeline worker ids start with it)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class WorkerHeartbeatQuerySet(models.QuerySet["WorkerHeartbeat"]):
    def beat(self, role: str, worker: str | None = None) -> None:
        """Upsert a process's heartbeat (INSERT ... ON CONFLICT: no read-modify-write race).

        Keyed by host:pid, not by pipeline worker id: a django-q2 process runs many drain
        tasks, each with its own worker id, and must stay one row.
        """
        worker = worker or process_name()
        now = timezone.now()
        self.bulk_create(
            [WorkerHeartbeat(worker=worker, role=role, started_at=now, beat_at=now)],
            update_conflicts=True,
            unique_fields=["worker"],
            update_fields=["role", "beat_at"],
        )

    def fresh(self, max_age: timedelta) -> WorkerHeartbeatQuerySet:
        """Processes alive: a beat within `max_age` (workers beat every HEARTBEAT_EVERY seconds, busy
        or idle), or, for the every-minute schedule's rows, within SCHEDULE_MAX_AGE."""
        now = timezone.now()
        return self.filter(
            Q(beat_at__gte=now - max_age) | Q(role=WorkerRole.SCHEDULE, beat_at__gte=now - SCHEDULE_MAX_AGE)
        )

    def stop(self, worker: str | None = None) -> int:
        """A process stopping cleanly removes its row: it must not count as alive once gone."""
        return self.filter(worker=worker or process_name()).delete()[0]


class WorkerHeartbeat(models.Model):
    """A pipeline worker process (host:pid) said it was alive at `beat_at`.

    Written by the run_pipeline loop and django-q2 drain tasks (per batch, throttled) and by
    a 1-minute django-q2 schedule; read by the queue health check and the overview page.
    """

    worker = models.CharField(max_length=200, unique=True, help_text="host:pid of the worker process.")
    role = models.CharField(max_length=20, choices=WorkerRole.choices)
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField(db_index=True)

    objects = WorkerHeartbeatQuerySet.as_manager()

    class Meta:
        ordering = ["-beat_at"]

    def __str__(self) -> str:
        return self.worker


class ProviderCircuitQuerySet(models.QuerySet["ProviderCircuit"]):
    """The transitions of a provider endpoint's circuit breaker, each a compare-and-swap UPDATE:
    every worker shares one row per endpoint, and the loser of a race changes nothing."""

    def endpoint(self, collection: Collection) -> ProviderCircuitQuerySet:
        return self.filter(model=collection.model, api_base=collection.api_base)

    def record_failure(self, collection: Collection, error_type: str, threshold: int, wait: timedelta) -> str:
        """Count one more consecutive transient failure of the collection's endpoint; the
        `threshold`-th opens a closed circuit for `wait`. Returns the circuit's state after."""
        now = timezone.now()
        with connections[self.db].cursor() as cur:
            cur.execute(
                """
                INSERT INTO pipeline_providercircuit AS p
                       (model, api_base, endpoint, state, consecutive_failures, reopenings, probe_owner,
                        last_error_type, last_failure_at, updated_at)
                VALUES (%s, %s, %s, 'closed', 1, 0, '', %s, %s, %s)
                ON CONFLICT (model, api_base) DO UPDATE
                   SET consecutive_failures = p.consecutive_failures + 1,
                       last_error_type = EXCLUDED.last_error_type,
                       last_failure_at = EXCLUDED.last_failure_at,
                       updated_at = EXCLUDED.updated_at
                RETURNING p.id, p.state, p.consecutive_failures
                """,
                [collection.model, collection.api_base, endpoint_label(collection), error_type, now, now],
            )
            pk, state, failures = cur.fetchone()
        if state == CircuitState.CLOSED and failures >= threshold:
            opened = self.filter(pk=pk, state=CircuitState.CLOSED).update(
                state=CircuitState.OPEN, opened_at=now, next_probe_at=now + wait, reopenings=0, updated_at=now
            )
            if opened or self.filter(pk=pk).exclude(state=CircuitState.CLOSED).exists():
                return CircuitState.OPEN
        return state

    def record_success(self, collection: Collection) -> int:
        """The endpoint answered: a run of failures is broken (a closed circuit's count restarts)."""
        return (
            self.endpoint(collection)
            .filter(state=CircuitState.CLOSED, consecutive_failures__gt=0)
            .update(consecutive_failures=0, updated_at=timezone.now())
        )

    def take_probe(self, worker: str, lease: timedelta) -> ProviderCircuit | None:
        """Win the half-open probe of one circuit whose wait is over (or whose prober died: its
        probe lease ran out). One worker wins; the others see no row and claim as usual."""
        now = timezone.now()
        with transaction.atomic(using=self.db):
            circuit = (
                self.filter(state__in=[CircuitState.OPEN, CircuitState.HALF_OPEN], next_probe_at__lte=now)
                .order_by("next_probe_at")
                .select_for_update(skip_locked=True)
                .first()
            )
            if circuit is None:
                return None
            self.filter(pk=circuit.pk).update(
                state=CircuitState.HALF_OPEN, probe_owner=worker, next_probe_at=now + lease, updated_at=now
            )
        circuit.refresh_from_db()
        return circuit

    def close(self, worker: str) -> int:
        """The worker's probe got answers: calls go through again."""
        return self.filter(state=CircuitState.HALF_OPEN, probe_owner=worker).update(
            state=CircuitState.CLOSED,
            consecutive_failures=0,
            reopenings=0,
            opened_at=None,
            next_probe_at=None,
            probe_owner="",
            updated_at=timezone.now(),
        )

    def reopen(self, worker: str, wait: timedelta) -> int:
        """The worker's probe failed too: open again; the next probe comes after `wait`."""
        now = timezone.now()
        return self.filter(state=CircuitState.HALF_OPEN, probe_owner=worker).update(
            state=CircuitState.OPEN,
            opened_at=now,
            next_probe_at=now + wait,
            reopenings=F("reopenings") + 1,
            probe_owner="",
            updated_at=now,
        )

    def postpone(self, worker: str, wait: timedelta) -> int:
        """Nothing was due to probe with: stay open, same backoff, and look again after `wait`."""
        now = timezone.now()
        return self.filter(state=CircuitState.HALF_OPEN, probe_owner=worker).update(
            state=CircuitState.OPEN, next_probe_at=now + wait, probe_owner="", updated_at=now
        )


def endpoint_label(collection: Collection) -> str:
    """model@host[:port] of a provider endpoint: a metric label and what operators read. Never the
    api_base itself, which may carry credentials (user:password@, ?key=) in its userinfo or query."""
    from urllib.parse import urlsplit

    if not collection.api_base:
        return collection.model
    try:
        parts = urlsplit(collection.api_base)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        host, port = "?", ""
    return f"{collection.model}@{host}{port}"


class ProviderCircuit(models.Model):
    """The circuit breaker of one provider endpoint (model + api_base), shared by every worker.

    EMBEDPORTAL_CIRCUIT_FAILURES consecutive transient failures (5xx, connection refused, timeout,
    429) open it: claims skip the collections using the endpoint, whose documents wait pending,
    and workers go on with other collections. After EMBEDPORTAL_CIRCUIT_OPEN_SECONDS (doubled per
    failed probe, up to EMBEDPORTAL_CIRCUIT_MAX_OPEN_SECONDS) one worker wins the half-open probe
    and sends one small batch: answers close it, another failure opens it again.
    """

    model = models.CharField(max_length=200)
    api_base = models.CharField(max_length=500, blank=True)
    endpoint = models.CharField(max_length=300, help_text="model@host: the metric label (no credentials).")
    state = models.CharField(max_length=12, choices=CircuitState.choices, default=CircuitState.CLOSED)
    consecutive_failures = models.PositiveIntegerField(default=0)
    reopenings = models.PositiveIntegerField(default=0, help_text="Failed probes since it opened (the backoff step).")
    opened_at = models.DateTimeField(null=True, blank=True)
    next_probe_at = models.DateTimeField(null=True, blank=True, help_text="Open: the next probe; half-open: its lease.")
    probe_owner = models.CharField(max_length=100, blank=True, help_text="The worker probing (half-open).")
    last_error_type = models.CharField(max_length=20, choices=ErrorType.choices, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()

    objects = ProviderCircuitQuerySet.as_manager()

    class Meta:
        ordering = ["endpoint"]
        constraints = [
            # The failure upsert's conflict target; also the claim's per-collection circuit lookup.
            models.UniqueConstraint(fields=["model", "api_base"], name="pipeline_providercircuit_unique_endpoint"),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} ({self.state})"


class ModelCheck(models.Model):
    """The latest health probe of one model configuration (model, api_base, key variable,
    dimensions, extra_params), shared by every web worker and command.

    The model health check reuses a probe younger than EMBEDPORTAL_HEALTH_MODEL_CACHE_SECONDS,
    so anonymous probes of /api/v1/health/ cost at most one provider call per configuration
    per interval, whatever their number. Written by pipeline.health under an advisory lock.
    """

    key = models.CharField(max_length=64, help_text="sha256 of the configuration.")
    model = models.CharField(max_length=255)
    collections = models.JSONField(default=list, help_text="Active collections that use this configuration.")
    ok = models.BooleanField()
    reason = models.TextField()
    seconds = models.FloatField(help_text="The model's answer to the probe, load excluded.")
    load_seconds = models.FloatField(help_text="Loading LiteLLM and a local model's weights first (0 once loaded).")
    checked_at = models.DateTimeField()

    class Meta:
        ordering = ["model", "key"]
        constraints = [models.UniqueConstraint(fields=["key"], name="pipeline_modelcheck_key_unique")]

    def __str__(self) -> str:
        return f"{self.model} ({'ok' if self.ok else 'failing'})"


class CollectionActivity(models.Model):
    """One collection's pipeline activity in one minute (or, once rolled up, one hour): the durable
    history behind the admin's SLO and capacity figures (pipeline.history writes and reads it)."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="+")
    start = models.DateTimeField()
    seconds = models.PositiveIntegerField(help_text="60 (a minute) or 3600 (an hour, rolled up).")
    arrived = models.BigIntegerField(default=0, help_text="Documents enqueued (new or changed content).")
    embedded = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0, help_text="Documents failed for good (in-batch retries exhausted).")
    # Plain counts per bucket of the Prometheus histograms' bounds (pipeline.metrics), +Inf last.
    latency = ArrayField(models.BigIntegerField(), help_text="Per-document total seconds, bucket counts.")
    freshness = ArrayField(models.BigIntegerField(), help_text="Embedded minus source modified time, bucket counts.")
    queue_depth = models.IntegerField(
        null=True, blank=True, help_text="Pending documents (an hour: its highest sample)."
    )

    class Meta:
        verbose_name_plural = "collection activity"
        constraints = [
            # The upsert's conflict target; also serves per-collection reads.
            models.UniqueConstraint(
                fields=["collection", "seconds", "start"], name="pipeline_collectionactivity_unique_start"
            ),
            models.CheckConstraint(condition=Q(seconds__in=[60, 3600]), name="pipeline_collectionactivity_seconds"),
            # Changing a histogram's bounds changes these sizes: the history must then be migrated.
            models.CheckConstraint(
                condition=Q(latency__len=len(LATENCY_BUCKETS) + 1), name="pipeline_collectionactivity_latency_size"
            ),
            models.CheckConstraint(
                condition=Q(freshness__len=len(FRESHNESS_BUCKETS) + 1),
                name="pipeline_collectionactivity_freshness_size",
            ),
        ]
        indexes = [
            # Window sums over all collections (pipeline.history.totals/series), roll-up and pruning.
            models.Index(fields=["start"], name="pipeline_activity_start"),
        ]

    def __str__(self) -> str:
        return f"{self.collection_id} @ {self.start:%Y-%m-%d %H:%M} ({self.seconds} s)"


class CapacityMeasurement(models.Model):
    """One `manage.py measure_capacity` run: sustained docs/s per worker count for a model, and the
    Universal Scalability Law fitted to them (pipeline.capacity)."""

    model = models.CharField(max_length=200)
    measured_at = models.DateTimeField(db_index=True)
    documents = models.PositiveIntegerField(help_text="Documents embedded per worker count.")
    chars_per_document = models.PositiveIntegerField()
    # [{"workers": 1, "docs_per_second": 12.3, "documents": 300, "seconds": 24.4, "chunks": 1500}, ...]
    points = models.JSONField()
    usl_lambda = models.FloatField(null=True, blank=True, help_text="USL: docs/s of one worker without contention.")
    usl_sigma = models.FloatField(null=True, blank=True, help_text="USL: contention (serial fraction).")
    usl_kappa = models.FloatField(null=True, blank=True, help_text="USL: coherence (crosstalk) cost.")
    peak_workers = models.FloatField(null=True, blank=True, help_text="N* = sqrt((1 - sigma) / kappa).")
    fit_note = models.TextField(blank=True, help_text="How far the points determine the fit.")

    class Meta:
        ordering = ["-measured_at"]
        get_latest_by = "measured_at"

    def __str__(self) -> str:
        return f"{self.model} at {self.measured_at:%Y-%m-%d %H:%M}"

    def rate(self, workers: int) -> float | None:
        """The measured docs/s at this worker count, if it was measured."""
        return next((p["docs_per_second"] for p in self.points if p["workers"] == workers), None)


# --- performance (pipeline.timings writes, pipeline.optimizer reads) -----------------------------


class BatchTiming(models.Model):
    """One collection's share of one claimed batch: how long each stage took, what it cost.

    Every document of the batch waited for the whole stage, so these seconds are also each
    document's; the optimizer weights rows by `documents` for per-document percentiles.
    Pruned after EMBEDPORTAL_BATCH_TIMING_RETENTION_DAYS (the hourly roll-up schedule).
    """

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="+")
    worker = models.CharField(max_length=200)
    finished_at = models.DateTimeField()
    documents = models.PositiveIntegerField(help_text="Documents stored by this batch.")
    chunks = models.PositiveIntegerField()
    tokens = models.BigIntegerField(default=0, help_text="Tokens the provider billed (its usage figure).")
    cost_usd = models.FloatField(default=0.0, help_text="LiteLLM's price of those tokens (0 for local models).")
    claim_seconds = models.FloatField(help_text="The claim query of the batch (shared by its collections).")
    chunking_seconds = models.FloatField()
    embedding_seconds = models.FloatField()
    storage_seconds = models.FloatField()
    total_seconds = models.FloatField(help_text="Chunking + embedding + storage, as the latency histogram's total.")
    queue_wait_seconds = models.FloatField(help_text="Mean of enqueued -> claimed over the batch's documents.")
    batch_size = models.PositiveIntegerField(help_text="The collection's embedding batch size at the time.")

    class Meta:
        indexes = [
            # The optimizer's windows per collection, and the change evaluator's "batches since".
            models.Index(fields=["collection", "finished_at"], name="pipeline_batchtiming_coll_at"),
            # Windows over every collection, and pruning.
            models.Index(fields=["finished_at"], name="pipeline_batchtiming_at"),
        ]

    def __str__(self) -> str:
        return f"{self.collection_id} @ {self.finished_at:%Y-%m-%d %H:%M:%S} ({self.documents} docs)"


class CollectionCost(models.Model):
    """Cumulative embedding spend of a collection since it was created (never pruned)."""

    collection = models.OneToOneField(Collection, on_delete=models.CASCADE, primary_key=True, related_name="cost")
    documents = models.BigIntegerField(default=0, help_text="Documents stored.")
    tokens = models.BigIntegerField(default=0)
    cost_usd = models.FloatField(default=0.0)
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.collection_id}: ${self.cost_usd:.6f}"

    @property
    def per_document(self) -> float | None:
        return self.cost_usd / self.documents if self.documents else None


class OptimizationChangeQuerySet(models.QuerySet["OptimizationChange"]):
    def pending(self) -> OptimizationChangeQuerySet:
        return self.filter(status=OptimizationStatus.APPLIED)

    def conclude(self, status: str, measurement_after: dict, note: str) -> int:
        """CAS applied -> kept/reverted: the evaluator that loses a race gets 0 and leaves the row alone."""
        return self.filter(status=OptimizationStatus.APPLIED).update(
            status=status, measurement_after=measurement_after, note=note, evaluated_at=timezone.now()
        )


class OptimizationChange(models.Model):
    """A collection setting the optimizer changed, with the measurements that decide whether it stays."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="optimization_changes")
    setting = models.CharField(max_length=50, help_text="A Collection field.")
    before = models.JSONField()
    after = models.JSONField()
    reason = models.TextField(help_text="The recommendation and its expected effect.")
    measurement_before = models.JSONField(help_text="Per-document p95 seconds and docs/s before the change.")
    measurement_after = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=OptimizationStatus.choices, default=OptimizationStatus.APPLIED)
    note = models.TextField(blank=True, help_text="Why it was kept or reverted.")
    applied_by = models.CharField(max_length=150, blank=True)
    applied_at = models.DateTimeField()
    evaluated_at = models.DateTimeField(null=True, blank=True)

    objects = OptimizationChangeQuerySet.as_manager()

    class Meta:
        ordering = ["-applied_at"]
        permissions = [("apply_optimizationchange", "Can apply optimizer recommendations")]
        constraints = [
            # One change under measurement per collection: two at once could not be told apart.
            models.UniqueConstraint(
                fields=["collection"],
                condition=Q(status="applied"),
                name="pipeline_optimizationchange_one_pending",
            ),
        ]
        indexes = [
            # The evaluation schedule scans applied changes only (pipeline.optimizer.evaluate_pending).
            models.Index(fields=["applied_at"], condition=Q(status="applied"), name="pipeline_optchange_pending"),
        ]

    def __str__(self) -> str:
        return f"{self.collection_id}.{self.setting}: {self.before} -> {self.after} ({self.status})"
