"""The document queue (claims, leases, transitions) and the chunks stored for each document."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import connections, models, transaction
from django.db.models import Case, Exists, F, Func, Min, OuterRef, Q, Value, When
from django.utils import timezone
from pgvector.django import VectorField

from pipeline.choices import CircuitState, DocumentStatus
from pipeline.models.collection import Collection, wake_workers
from pipeline.models.operations import ProviderCircuit

# The one order in which every statement that changes several documents locks them: the producers'
# upsert order (pipeline.queue: by id within its collection). A worker's update in another order (its
# ids') and an upsert sharing two of its rows deadlocked, and PostgreSQL failed one of them: a 409 for
# the producer, a failed batch for the worker (a write soak of make run's stack hit ten in eight minutes).
LOCK_ORDER = ("collection_id", "external_id")

# The text search configuration of the keyword index and of keyword queries.
SEARCH_CONFIG = "english"

# The claim's first step: unpaused collections with work due whose endpoint's circuit is closed (or
# the one endpoint probed), least recently claimed first. Each subquery is one index probe
# (pipeline_document_pending_coll, pipeline_document_leased), so it costs the same at any backlog.
_NEXT_COLLECTIONS_SQL = """
SELECT c.id FROM pipeline_collection c
 WHERE NOT c.paused
   AND NOT EXISTS (SELECT 1 FROM pipeline_providercircuit p
                    WHERE p.model = c.model AND p.api_base = c.api_base AND p.state <> 'closed')
   AND ((SELECT d.available_at FROM pipeline_document d
          WHERE d.collection_id = c.id AND d.status = 'pending'
          ORDER BY d.available_at LIMIT 1) <= %(now)s
        OR EXISTS (SELECT 1 FROM pipeline_document d
                    WHERE d.collection_id = c.id AND d.status = 'processing' AND d.lease_expires_at < %(now)s))
 ORDER BY c.last_claimed_at NULLS FIRST, c.id
 LIMIT %(candidates)s
"""
# Collections tried per claim when the first ones' due rows are all locked by concurrent claimers.
CLAIM_CANDIDATES = 4
# Bytes of text one claim takes at most (one document at least, however large): 32 documents of a
# million characters took longer to chunk than django-q2's task timeout (600 s), whose kill returned
# them to the queue for the next claim to take again, for ever (an adversarial-input soak). Ordinary
# documents never reach it.
CLAIM_TEXT_BYTES = 2_000_000
# Taken on the collection's row before its documents, Collection.delete()'s lock order: a claim locked
# the documents first and then updated last_claimed_at, and deadlocked with a delete (the operations
# tests delete their scratch collections hourly). KEY SHARE conflicts with the delete's FOR UPDATE
# only, never with other claimers or updates; a collection being deleted is skipped.
_HOLD_COLLECTION_SQL = "SELECT 1 FROM pipeline_collection WHERE id = %s FOR KEY SHARE SKIP LOCKED"
_STAMP_CLAIMED_SQL = """
UPDATE pipeline_collection SET last_claimed_at = %s
 WHERE id = (SELECT id FROM pipeline_collection WHERE id = %s FOR NO KEY UPDATE SKIP LOCKED)
"""


class DocumentQuerySet(models.QuerySet["Document"]):
    def workable(self) -> DocumentQuerySet:
        """In unpaused collections whose provider's circuit is closed: the work a worker could do now
        (an open circuit's is not: counting it scaled workers out, and failed the queue health check,
        for an outage they could do nothing about)."""
        circuits = ProviderCircuit.objects.exclude(state=CircuitState.CLOSED)
        held = circuits.filter(model=OuterRef("collection__model"), api_base=OuterRef("collection__api_base"))
        return self.filter(collection__paused=False).exclude(Exists(held))

    def claimable(self, now: datetime | None = None) -> DocumentQuerySet:
        """Workable documents pending or whose worker's lease expired: what a claim would take."""
        now = now or timezone.now()
        return self.workable().filter(
            Q(status=DocumentStatus.PENDING, available_at__lte=now)
            | Q(status=DocumentStatus.PROCESSING, lease_expires_at__lt=now)
        )

    def claim(self, worker: str, limit: int, lease: timedelta) -> list[Document]:
        """Lease up to `limit` documents of one collection, the least recently claimed with work due and its
        circuit closed. docs/architecture.md has why."""
        now = timezone.now()
        with transaction.atomic(using=self.db):
            with connections[self.db].cursor() as cur:
                cur.execute(_NEXT_COLLECTIONS_SQL, {"now": now, "candidates": CLAIM_CANDIDATES})
                candidates = [row[0] for row in cur.fetchall()]
                for collection_id in candidates:
                    cur.execute(_HOLD_COLLECTION_SQL, [collection_id])
                    if cur.fetchone() is not None and (ids := self._lock_due(collection_id, now, limit)):
                        break
                else:
                    return []
            self.filter(pk__in=ids).update(
                status=DocumentStatus.PROCESSING,
                lease_owner=worker,
                lease_expires_at=now + lease,
                attempts=F("attempts") + 1,
                # Taken while still processing: the lease ran out, its worker killed or stalled.
                lost_leases=F("lost_leases") + Case(When(status=DocumentStatus.PROCESSING, then=1), default=0),
                updated_at=now,
            )
            # The round-robin stamp, unless another transaction holds the row (a re-embed requeueing these
            # very documents would wait for this claim while it waited for them: a deadlock); a stamp
            # skipped only lets this collection come up again first.
            with connections[self.db].cursor() as cur:
                cur.execute(_STAMP_CLAIMED_SQL, [now, collection_id])
        return list(self.filter(pk__in=ids, lease_owner=worker).select_related("collection").order_by("id"))

    def _lock_due(self, collection_id: int, now: datetime, limit: int) -> list[int]:
        """Lock up to `limit` of the collection's claimable rows: expired leases first (older work),
        then pending ones, first available first. Two queries, each served by its partial index
        with no sort (an OR of both would read and sort the whole backlog)."""
        expired = self.filter(collection_id=collection_id, status=DocumentStatus.PROCESSING, lease_expires_at__lt=now)
        pending = self.due(now).filter(collection_id=collection_id)
        ids: list[int] = []
        room = CLAIM_TEXT_BYTES
        for rows in (expired.order_by("lease_expires_at"), pending.order_by("available_at", "id")):
            # octet_length reads a TOASTed text's size from its header, never the text.
            sized = rows.select_for_update(skip_locked=True).annotate(size=Func(F("text"), function="octet_length"))
            for pk, size in sized.values_list("pk", "size")[: max(0, limit - len(ids))]:
                if ids and size > room:  # the first always: one large document is still claimed
                    return ids
                ids.append(pk)
                room -= size
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
        The oldest-pending gauge and the queue health check both read it, of workable() documents
        (pipeline_document_pending)."""
        return self.due(now).aggregate(oldest=Min("available_at"))["oldest"]

    def owned_by(self, worker: str) -> DocumentQuerySet:
        return self.filter(status=DocumentStatus.PROCESSING, lease_owner=worker)

    def renew(self, worker: str, lease: timedelta) -> int:
        """Extend the worker's leases (a batch running longer than a lease is still alive). Rows another
        transaction holds are skipped, not waited for: the worker's own store holds them while it commits
        them (a large one made every renewal fail at its lock timeout, an error each time), and a claim
        skips a locked row whatever its lease says."""
        with transaction.atomic(using=self.db):
            free = self.owned_by(worker).select_for_update(no_key=True, skip_locked=True).values("pk")
            return self.filter(pk__in=list(free.values_list("pk", flat=True))).update(
                lease_expires_at=timezone.now() + lease
            )

    def _unleased(self, status: str, **changes: Any) -> int:
        with transaction.atomic(using=self.db):
            return self._locked().update(
                status=status, lease_owner="", lease_expires_at=None, updated_at=timezone.now(), **changes
            )

    def _locked(self) -> DocumentQuerySet:
        """These rows, locked in LOCK_ORDER as an UPDATE locks them, inside the caller's transaction; the
        caller then updates them."""
        rows = self.order_by(*LOCK_ORDER).select_for_update(no_key=True, of=("self",)).values("pk")
        sql, params = rows.query.sql_with_params()
        with connections[self.db].cursor() as cur:
            cur.execute(f"SELECT count(*) FROM ({sql}) AS locked", params)
        return self

    def mark_failed(self, worker: str, error: str) -> int:
        return self.owned_by(worker)._unleased(DocumentStatus.FAILED, last_error=error[:2000])

    def mark_embedded(self, worker: str, versions: list[tuple[int, str]], embedded_at: datetime) -> set[int]:
        """Compare-and-swap, one statement for the batch: of the (id, content hash) pairs a worker embedded,
        those it still leases at that version become embedded (a document re-enqueued with new text meanwhile
        is refused). Returns the accepted ids; call inside the transaction that writes their chunks."""
        if not versions:
            return set()
        ids, hashes = zip(*versions, strict=True)
        with connections[self.db].cursor() as cur:
            cur.execute(
                """
                UPDATE pipeline_document d
                   SET status = 'embedded', last_embedded_at = %s, lease_owner = '',
                       lease_expires_at = NULL, last_error = '', updated_at = now()
                  FROM (SELECT d2.id FROM pipeline_document d2
                          JOIN unnest(%s::bigint[], %s::text[]) AS v(id, content_hash)
                            ON d2.id = v.id AND d2.content_hash = v.content_hash
                         WHERE d2.status = 'processing' AND d2.lease_owner = %s
                      -- LOCK_ORDER (a producer's change since the claim is re-checked here, and refused)
                      ORDER BY d2.collection_id, d2.external_id FOR NO KEY UPDATE OF d2) AS m
                 WHERE d.id = m.id
             RETURNING d.id
                """,
                [embedded_at, list(ids), list(hashes), worker],
            )
            return {row[0] for row in cur.fetchall()}

    def release(self, worker: str) -> int:
        """Give the worker's leased documents back to the queue untouched (graceful shutdown)."""
        return wake_workers(self.owned_by(worker)._unleased(DocumentStatus.PENDING), self.db)

    def defer_until(self, worker: str, until: datetime, error: str) -> int:
        """Give the worker's leased documents back to the queue, not claimable before `until`:
        their provider is failing for every input (an outage, a rate limit), which is no fault
        of theirs. They stay pending; `last_error` says why they wait."""
        return self.owned_by(worker)._unleased(DocumentStatus.PENDING, available_at=until, last_error=error[:2000])

    def requeue(self, leased: bool = False) -> int:
        """Send embedded or failed documents back to the queue (with `leased`, those being processed too:
        their worker's store is then refused) and wake workers after commit: every requeue (operator
        actions, re-embed, the reprocessing retry pass, the staleness pass)."""
        statuses = [DocumentStatus.EMBEDDED, DocumentStatus.FAILED, *([DocumentStatus.PROCESSING] if leased else [])]
        now = timezone.now()
        requeued = self.filter(status__in=statuses)._unleased(
            DocumentStatus.PENDING, attempts=0, lost_leases=0, enqueued_at=now, available_at=now, last_error=""
        )
        return wake_workers(requeued, self.db)

    def remove(self) -> int:
        """Delete these documents and their chunks (failures cascade in the database), their rows locked
        first: a worker storing one committed before (its chunks go too) or finds it gone (mark_embedded
        refuses it). Django's cascade would delete the chunks before the lock, racing that store."""
        with transaction.atomic(using=self.db):
            ids = list(self.order_by(*LOCK_ORDER).select_for_update(of=("self",)).values_list("pk", flat=True))
            Chunk.objects.using(self.db).filter(document_id__in=ids)._raw_delete(self.db)
            return Document.objects.using(self.db).filter(pk__in=ids)._raw_delete(self.db)


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
    lost_leases = models.PositiveSmallIntegerField(
        default=0,
        db_default=0,
        help_text="Times a worker's lease on this version ran out while processing it (the worker killed or "
        "stalled); a new version or a requeue starts again at 0.",
    )
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
    """A piece of a document's text and its embedding, of no fixed dimension: each collection's HNSW
    index is a partial expression index casting to its own."""

    # No index of its own: the unique (document, generation, ordinal) index leads with it, and
    # every chunk written pays each index's insertion (docs/benchmarks.md, steady mode).
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks", db_index=False)
    # Denormalised from the document: the per-collection partial HNSW index filters on it.
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="+")
    ordinal = models.PositiveIntegerField()
    text = models.TextField()
    token_count = models.PositiveIntegerField()
    embedding = VectorField()
    # Collection.generation is what search reads; a re-embed writes the next one beside it.
    generation = models.PositiveIntegerField(default=1, db_default=1)
    # The document's title and the heading path above the chunk (pipeline.structure), " > " joined.
    title = models.TextField(default="", db_default="")
    headings = models.TextField(default="", db_default="")
    # Keyword search's index (pipeline.keyword): computed by PostgreSQL in the COPY that writes the
    # chunk, title over headings over text.
    search_vector = models.GeneratedField(
        expression=SearchVector("title", weight="A", config=SEARCH_CONFIG)
        + SearchVector("headings", weight="B", config=SEARCH_CONFIG)
        + SearchVector("text", weight="C", config=SEARCH_CONFIG),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["document", "generation", "ordinal"], name="pipeline_chunk_unique_generation_ordinal"
            ),
        ]
        # pipeline.keyword's matches: any query term, then filtered to a collection's generation.
        indexes = [GinIndex(fields=["search_vector"], name="pipeline_chunk_search_gin")]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.ordinal}"
