"""The source queue: producers enqueue document versions; unchanged content is skipped."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from embedportal.printable import unsafe_character
from embedportal.storable import unstorable
from pipeline import backfill, history, metrics
from pipeline.models import Chunk, Collection, Document
from pipeline.structure import only_front_matter
from pipeline.wakeup import kick_workers


class InvalidDocument(ValueError):
    """A document that cannot be accepted (the message says what to fix); `index`: its place in the batch."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True, slots=True)
class IncomingDocument:
    external_id: str
    text: str
    modified_at: datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass(slots=True)
class EnqueueResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # Older (by modified_at) than the stored version: not applied.
    stale: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return len(self.created) + len(self.updated) + len(self.unchanged)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, **asdict(self)}

    def ids(self) -> set[str]:
        """Every id sent, applied or not."""
        return {*self.created, *self.updated, *self.unchanged, *self.stale}

    def add(self, other: EnqueueResult) -> None:
        for name in ("created", "updated", "unchanged", "stale"):
            getattr(self, name).extend(getattr(other, name))


def metadata_problem(metadata: Any) -> str | None:
    """The one bound on metadata at every entry point (EMBEDPORTAL_MAX_METADATA_KEYS/_DEPTH/_BYTES). Walked
    without recursion, depth and keys before bytes: a hostile value is refused cheaply."""
    if not isinstance(metadata, Mapping):
        return "metadata must be a JSON object"
    max_keys, max_depth = settings.EMBEDPORTAL_MAX_METADATA_KEYS, settings.EMBEDPORTAL_MAX_METADATA_DEPTH
    keys, level = 0, [metadata]
    for depth in range(1, max_depth + 2):
        if not level:
            break
        if depth > max_depth:
            return f"metadata is nested more than {max_depth} levels deep (EMBEDPORTAL_MAX_METADATA_DEPTH); flatten it"
        keys += sum(len(v) for v in level if isinstance(v, Mapping))
        if keys > max_keys:
            return f"metadata has more than {max_keys} keys (EMBEDPORTAL_MAX_METADATA_KEYS); keep fewer"
        level = [
            child
            for v in level
            for child in (v.values() if isinstance(v, Mapping) else v)
            if isinstance(child, (Mapping, list, tuple))
        ]
    size = len(json.dumps(dict(metadata), cls=DjangoJSONEncoder, ensure_ascii=False).encode("utf-8", "surrogatepass"))
    limit = settings.EMBEDPORTAL_MAX_METADATA_BYTES
    if size > limit:
        return f"metadata is {size} bytes of JSON, over the limit of {limit} (EMBEDPORTAL_MAX_METADATA_BYTES)"
    return None


def validate(doc: IncomingDocument, contextual: bool = False) -> None:
    """Reject what PostgreSQL or the pipeline cannot hold, with a message saying what to fix (`contextual`:
    for a collection with contextual chunks, whose front matter is metadata)."""
    if not doc.external_id or not doc.external_id.strip():
        raise InvalidDocument("id must be a non-empty string")
    if len(doc.external_id) > 512:
        raise InvalidDocument("id is longer than 512 characters")
    # A document's address holds its id: one with a line break broke every list page holding it (500); a
    # bidi override showed "invoice-\u202efdp.exe" in the admin as invoice-exe.pdf.
    if problem := unsafe_character(doc.external_id):
        raise InvalidDocument(f"id {problem}")
    if doc.external_id.endswith("/requeue"):
        raise InvalidDocument(
            "id ends in /requeue: its address would be the requeue route of the document before it; rename it"
        )
    if not doc.text or not doc.text.strip():
        raise InvalidDocument("text is empty; send the document's text (whitespace alone is empty)")
    limit = settings.EMBEDPORTAL_MAX_DOCUMENT_CHARS
    if len(doc.text) > limit:
        raise InvalidDocument(
            f"text has {len(doc.text)} characters, over the limit of {limit} (EMBEDPORTAL_MAX_DOCUMENT_CHARS); "
            "split the document"
        )
    if problem := metadata_problem(doc.metadata):
        raise InvalidDocument(problem)
    for name, value in (("id", doc.external_id), ("text", doc.text), ("metadata", doc.metadata)):
        if problem := unstorable(value):
            raise InvalidDocument(f"{name} {problem}")
    if doc.modified_at is not None and timezone.is_naive(doc.modified_at):
        raise InvalidDocument("modified_at needs a timezone (e.g. 2026-01-31T12:00:00Z)")
    if doc.modified_at is not None and not _in_utc_range(doc.modified_at):
        # PostgreSQL would store it (as year 0 or 10000), and every read of the row would then fail: the
        # workers' claim and the document lists.
        raise InvalidDocument("modified_at is out of range in UTC (years 1 to 9999); send the source's real time")
    if contextual and only_front_matter(doc.text):
        # Accepted, it would fail at chunking as empty_document and be retried for a day.
        raise InvalidDocument(
            "text is only YAML front matter, which this collection keeps as metadata (contextual_chunks): "
            "nothing is left to embed; send the document's body"
        )


def _in_utc_range(moment: datetime) -> bool:
    try:
        moment.astimezone(UTC)
    except OverflowError:
        return False
    return True


def _new_or_changed(
    cur: Any, collection: Collection, docs: list[IncomingDocument], now: datetime
) -> tuple[set[str], set[str]]:
    """(ids new or changed, ids older than the stored version), sending no text; unchanged documents
    get their metadata refreshed. A re-run of an unchanged corpus then rewrites no row; the upsert
    still decides with its own CASE and staleness guard, so a concurrent producer cannot be lost."""
    cur.execute(
        """
        WITH v AS (
            SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[])
                       AS v(external_id, content_hash, metadata, modified_at)
        ), refreshed AS (
            UPDATE pipeline_document d SET metadata = m.metadata, updated_at = %s
              FROM (SELECT d2.id, v.metadata::jsonb AS metadata
                      FROM v JOIN pipeline_document d2
                        ON d2.collection_id = %s AND d2.external_id = v.external_id
                       AND d2.content_hash = v.content_hash AND d2.metadata <> v.metadata::jsonb
                       AND NOT COALESCE(v.modified_at < d2.source_modified_at, false)
                     -- LOCK_ORDER (pipeline.models.document): no deadlock with a producer or worker.
                     ORDER BY d2.external_id FOR UPDATE OF d2) AS m
             WHERE d.id = m.id
        )
        SELECT v.external_id, COALESCE(v.modified_at < d.source_modified_at, false) AS stale FROM v
          LEFT JOIN pipeline_document d ON d.collection_id = %s AND d.external_id = v.external_id
         WHERE d.content_hash IS DISTINCT FROM v.content_hash OR v.modified_at < d.source_modified_at
        """,
        [*_columns(docs), now, collection.pk, collection.pk],
    )
    rows = cur.fetchall()
    return {i for i, stale in rows if not stale}, {i for i, stale in rows if stale}


def _columns(docs: list[IncomingDocument]) -> list[list]:
    """The documents' ids, hashes, metadata (JSON) and source times: arrays for unnest()."""
    return [
        [d.external_id for d in docs],
        [d.content_hash for d in docs],
        [json.dumps(dict(d.metadata), cls=DjangoJSONEncoder) for d in docs],
        [d.modified_at for d in docs],
    ]


def duplicate_id(external_id: str) -> str:
    """The one message for an id sent twice in one request, admin form or `.jsonl` file."""
    return f"id {external_id!r} appears more than once; send each document once"


def enqueue(
    collection: Collection,
    docs: Iterable[IncomingDocument],
    source: str = "other",
    backfill_min: int | None = None,
) -> EnqueueResult:
    """Insert new documents and requeue changed ones (even one a worker holds: storage.store's CAS then
    refuses its result), in one INSERT ... ON CONFLICT; unchanged ones keep their state. Timed in
    embedding_pipeline_enqueue_seconds{source}. `backfill_min`: new documents that make a first load
    (pipeline.backfill); 0 never, None EMBEDPORTAL_BACKFILL_MIN_DOCUMENTS."""
    started = time.perf_counter()
    result = _enqueue(collection, list(docs), backfill_min)
    metrics.ENQUEUE_LATENCY.labels(source=source).observe(time.perf_counter() - started)
    return result


def _enqueue(collection: Collection, docs: list[IncomingDocument], backfill_min: int | None) -> EnqueueResult:
    seen: set[str] = set()
    for index, doc in enumerate(docs):
        try:
            validate(doc, collection.contextual_chunks)
        except InvalidDocument as exc:
            raise InvalidDocument(str(exc), index) from None
        if doc.external_id in seen:
            raise InvalidDocument(duplicate_id(doc.external_id), index)
        seen.add(doc.external_id)
    result = EnqueueResult()
    if not docs:
        return result
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cur:
        fresh, stale = _new_or_changed(cur, collection, docs, now)
        result.unchanged = [d.external_id for d in docs if d.external_id not in fresh | stale]
        result.stale = [d.external_id for d in docs if d.external_id in stale]
        docs = [d for d in docs if d.external_id in fresh]
        if not docs:
            return _count_stale(collection, result)
        cur.execute(
            """
            INSERT INTO pipeline_document AS d
                   (collection_id, external_id, text, content_hash, metadata, source_modified_at,
                    status, attempts, last_error, lease_owner, enqueued_at, available_at, created_at, updated_at)
            SELECT %s, v.external_id, v.text, v.content_hash, v.metadata::jsonb, v.modified_at,
                   'pending', 0, '', '', %s, %s, %s, %s
              FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::text[])
                   AS v(external_id, content_hash, metadata, modified_at, text)
             -- LOCK_ORDER (pipeline.models.document): no deadlock with a producer or worker.
             ORDER BY v.external_id
            ON CONFLICT (collection_id, external_id) DO UPDATE
               SET text = EXCLUDED.text,
                   content_hash = EXCLUDED.content_hash,
                   metadata = EXCLUDED.metadata,
                   -- Unchanged content is still fresh: a touched file must not look stale.
                   source_modified_at = CASE WHEN d.content_hash = EXCLUDED.content_hash THEN d.source_modified_at
                                             ELSE COALESCE(EXCLUDED.source_modified_at, d.source_modified_at) END,
                   status = CASE WHEN d.content_hash = EXCLUDED.content_hash THEN d.status ELSE 'pending' END,
                   attempts = CASE WHEN d.content_hash = EXCLUDED.content_hash THEN d.attempts ELSE 0 END,
                   lost_leases = CASE WHEN d.content_hash = EXCLUDED.content_hash THEN d.lost_leases ELSE 0 END,
                   enqueued_at = CASE WHEN d.content_hash = EXCLUDED.content_hash THEN d.enqueued_at
                                      ELSE EXCLUDED.enqueued_at END,
                   available_at = CASE WHEN d.content_hash = EXCLUDED.content_hash THEN d.available_at
                                       ELSE EXCLUDED.available_at END,
                   last_error = CASE WHEN d.content_hash = EXCLUDED.content_hash THEN d.last_error ELSE '' END,
                   -- Pending again: no worker holds it (its store is refused), as every requeue leaves it.
                   lease_owner = CASE WHEN d.content_hash = EXCLUDED.content_hash THEN d.lease_owner ELSE '' END,
                   lease_expires_at = CASE WHEN d.content_hash = EXCLUDED.content_hash THEN d.lease_expires_at
                                           END,
                   updated_at = EXCLUDED.updated_at
             -- An older version (by source time) never replaces a newer one, even one a concurrent
             -- producer stored since the statement above: the row is then not returned.
             WHERE NOT COALESCE(EXCLUDED.source_modified_at < d.source_modified_at, false)
            RETURNING d.external_id, (xmax = 0) AS inserted, d.status = 'pending' AND d.enqueued_at = %s AS queued
            """,
            [collection.pk, now, now, now, now, *_columns(docs), [d.text for d in docs], now],
        )
        rows = cur.fetchall()
        result.stale += sorted({d.external_id for d in docs} - {row[0] for row in rows})
        for external_id, inserted, queued in rows:
            (result.created if inserted else result.updated if queued else result.unchanged).append(external_id)
        threshold = settings.EMBEDPORTAL_BACKFILL_MIN_DOCUMENTS if backfill_min is None else backfill_min
        if threshold and collection.building_generation is None and _first_load(collection, result.created, threshold):
            # A bulk first load is written without the HNSW index and indexed once (pipeline.backfill). It
            # begins before the workers are woken (on_commit runs in order): a batch claimed first was no
            # bulk load's, and stored first it kept the load from beginning at all.
            transaction.on_commit(lambda: backfill.begin_first_load(collection.pk), robust=True)
        if result.created or result.updated:
            history.record_arrivals(collection.pk, len(result.created) + len(result.updated), at=now)
            transaction.on_commit(kick_workers)
    return _count_stale(collection, result)


def _first_load(collection: Collection, created: list[str], threshold: int) -> bool:
    """Whether this call makes the collection's first load: `threshold` documents queued before any is
    stored, however many calls bring them (an API client posts a corpus in small requests).
    backfill.begin_first_load checks again that none is stored, in the statement that begins it."""
    if len(created) >= threshold:
        return True
    return (
        bool(created)
        and not Chunk.objects.filter(collection=collection).exists()
        and Document.objects.filter(collection=collection)[:threshold].count() >= threshold
    )


def _count_stale(collection: Collection, result: EnqueueResult) -> EnqueueResult:
    # Reserved scratch collections (operations tests, capacity runs) stay out of the shared metrics.
    if result.stale and not collection.is_reserved:
        metrics.STALE_VERSIONS.labels(collection=collection.name).inc(len(result.stale))
    return result


def delete_missing(collection: Collection, seen: set[str], before: datetime) -> list[str]:
    """Delete the collection's documents a source sync did not find (`seen`: every id it held), of those
    enqueued before it began: another producer's document enqueued meanwhile stays. The ids deleted."""
    stored = Document.objects.filter(collection=collection, enqueued_at__lt=before)
    missing = [i for i in stored.values_list("external_id", flat=True).iterator(chunk_size=5000) if i not in seen]
    for start in range(0, len(missing), 1000):
        Document.objects.filter(collection=collection, external_id__in=missing[start : start + 1000]).remove()
    return missing
