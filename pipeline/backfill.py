"""Backfills, re-embeds and HNSW index builds: docs/architecture.md, "Backfills, generations and index builds"."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from django.conf import settings
from django.db import DatabaseError, Error, connection, transaction
from django.db.models import Exists, F, OuterRef, QuerySet
from django.dispatch import Signal
from django.utils import timezone

from pipeline import encoder, storage
from pipeline.choices import DocumentStatus
from pipeline.collections import check_dimensions, check_model_dimensions, resolve_dimensions
from pipeline.models import Chunk, Collection, Document, OptimizationChange

logger = logging.getLogger(__name__)

# A re-embed's new generation is searched now: collection_id, previous (the generation it replaced).
generation_switched = Signal()

# Advisory lock key: one index build at a time (ASCII "HNSWBLD").
BUILD_LOCK = 0x484E5357424C44
# The name a rebuild builds under before it replaces Collection.index_name.
REBUILD_SUFFIX = "_rebuild"


def _with(collection: Collection, values: dict) -> Collection:
    view = copy.copy(collection)
    for name, value in values.items():
        setattr(view, name, value)
    return view


def serving(collection: Collection) -> Collection:
    """The collection as search must see it: during a re-embed, the configuration of the generation
    searched (its model for query vectors; its chunking to label evaluations)."""
    return _with(collection, collection.serving) if collection.serving else collection


def begin_first_load(collection_id: int) -> bool:
    """Start a first-load backfill if the collection has no chunks and none is running."""
    chunkless = Collection.objects.filter(pk=collection_id).exclude(
        Exists(Chunk.objects.filter(collection_id=OuterRef("pk")))
    )
    return _begin_in_place(chunkless, "first load")


def begin_backfill(collection_id: int) -> bool:
    """Write the queued documents without the index (the optimizer's backfill); False if one already runs."""
    return _begin_in_place(Collection.objects.filter(pk=collection_id), "backfill")


def _begin_in_place(collections: QuerySet[Collection], what: str) -> bool:
    with transaction.atomic():
        started = collections.filter(building_generation__isnull=True).update(building_generation=F("generation"))
        if started:
            collection = collections.get()
            with connection.cursor() as cur:
                cur.execute(f"DROP INDEX IF EXISTS {collection.index_name}")
            if not outstanding(collection.pk):  # nothing left to write: no store will call finish
                transaction.on_commit(lambda: finish(collection.pk), robust=True)
            logger.info("collection %s: %s in backfill mode (index built at the end)", collection.name, what)
    return bool(started)


def begin_reembed(collection: Collection, **changes: object) -> int:
    """Re-embed every document (those being processed too: their store is then refused) into a new
    generation with `changes`; search serves the current one until `finish`. Returns documents requeued."""
    with transaction.atomic():
        # FOR NO KEY UPDATE: a worker storing chunks holds its documents and takes KEY SHARE on this row
        # (the chunks' foreign key); FOR UPDATE would block it while this waits for the documents.
        current = Collection.objects.select_for_update(no_key=True).get(pk=collection.pk)
        # Kept across re-embeds started before the last one finished: it describes `generation`.
        serving = current.serving or {name: getattr(current, name) for name in Collection.REEMBED_FIELDS}
        for name, value in changes.items():
            if name not in Collection.REEMBED_FIELDS:
                raise ValueError(f"{name} is not a setting a re-embed can change")
            setattr(current, name, value)
        current.full_clean()
        check_dimensions(current)
        abandoned = current.building_generation if current.building_generation != current.generation else None
        building = max(current.generation, current.building_generation or 0) + 1
        current.save()  # never writes the generation fields (Collection.save): the row lock orders this update
        Collection.objects.filter(pk=current.pk).update(building_generation=building, serving=serving)
        if abandoned is not None:
            # An unfinished re-embed replaced by this one: its rows will never be searched.
            Chunk.objects.filter(collection=current, generation=abandoned)._raw_delete(using="default")
        if not Document.objects.filter(collection=current).exists():
            transaction.on_commit(lambda: finish(current.pk), robust=True)
        return Document.objects.filter(collection=current).requeue(leased=True)


def change_runtime(collection: Collection, served: encoder.TorchEncoder | encoder.OpenVinoEncoder) -> bool:
    """Gate a change of the local model's runtime for the collection (docs/architecture.md, "The local
    encoder"); returns whether a re-embed started. One worker decides: the row lock."""
    runtime = encoder.label(served)
    with transaction.atomic():
        current = Collection.objects.select_for_update(no_key=True).get(pk=collection.pk)
        if current.local_encoder in ("", runtime):
            return False
        gate = None
        if served.runtime == "openvino" and current.golden_queries.exists():
            try:
                gate = encoder.gate_collection(current.name, served.precision)
            except encoder.ExportFailed as exc:  # no verdict: never mix on a guess
                gate = {"passed": False, "problems": [str(exc)]}
        return runtime_changed(current, runtime, gate)


def runtime_changed(collection: Collection, runtime: str, gate: dict | None) -> bool:
    """Record the change of runtime and its gate; re-embed if the gate failed."""
    old, failed = collection.local_encoder, gate is not None and not gate["passed"]
    record = {**(gate or {}), "runtime": runtime, "from": old, "reembedded": failed, "at": timezone.now().isoformat()}
    with transaction.atomic():
        Collection.objects.filter(pk=collection.pk).update(local_encoder=runtime, runtime_gate=record)
        if failed:
            begin_reembed(collection)
            # Queries of the generation search still reads are embedded by the runtime that wrote it.
            view = Collection.objects.get(pk=collection.pk)
            Collection.objects.filter(pk=collection.pk).update(serving={**view.serving, "local_encoder": old})
    logger.log(
        logging.WARNING if failed else logging.INFO,
        "collection %s: local model runtime %s -> %s%s",
        collection.name,
        old,
        runtime,
        f": re-embedding ({'; '.join(gate['problems'])})" if failed else "",
    )
    return failed


def reembed(collections: Iterable[Collection]) -> int:
    """Re-embed each collection (the admin's bulk action); returns documents requeued."""
    return sum(begin_reembed(collection) for collection in collections)


def finish_building(document_ids: list[int]) -> None:
    """Once the storing batch commits, finish the backfills it completes (a failed build never fails it)."""
    building = Collection.objects.filter(building_generation__isnull=False, documents__pk__in=document_ids)
    for pk in building.values_list("pk", flat=True).distinct():
        transaction.on_commit(lambda pk=pk: finish(pk), robust=True)


def with_dimensions(collection: Collection, changes: dict) -> dict:
    """`changes` with a new model's dimensions filled in when not given, and given dimensions checked
    against what the model produces (a ValidationError says what to fix)."""
    if "dimensions" in changes:
        check_model_dimensions(_with(collection, changes))
        return changes
    if not changes.get("model"):
        return changes
    return {**changes, "dimensions": resolve_dimensions(_with(collection, changes))}


def build_memory(collection: Collection, generation: int) -> str:
    """maintenance_work_mem holding the whole graph (pgvector's build slows several-fold once it
    spills), capped by EMBEDPORTAL_INDEX_BUILD_MEMORY_MB."""
    rows = Chunk.objects.filter(collection=collection, generation=generation).count()
    # Each graph element holds its vector and up to 2m level-0 neighbours.
    needed = rows * (int(collection.dimensions) * 4 + int(collection.hnsw_m) * 2 * 8 + 64) * 1.3 / 2**20
    megabytes = max(64, 2 ** math.ceil(math.log2(max(needed, 1))))
    return f"{min(megabytes, settings.EMBEDPORTAL_INDEX_BUILD_MEMORY_MB)}MB"


def outstanding(collection_id: int) -> bool:
    return Document.objects.filter(
        collection_id=collection_id, status__in=[DocumentStatus.PENDING, DocumentStatus.PROCESSING]
    ).exists()


def held_back(collection: Collection) -> str | None:
    """Why a re-embed that wrote every document is not switched to, or None: more of its documents failed
    than were embedded (e.g. a key variable the workers lack, dimensions the model does not produce).
    Switching would replace what search reads by a generation missing most documents and delete the
    old one; a few failures switch (those documents are searchable again once reprocessed)."""
    new = collection.building_generation
    if new is None or new == collection.generation:  # a first load or backfill: no other generation serves
        return None
    documents = Document.objects.filter(collection=collection)
    failed = documents.filter(status=DocumentStatus.FAILED).count()
    embedded = documents.filter(status=DocumentStatus.EMBEDDED).count()
    if embedded >= failed:
        return None
    return (
        f"generation {new} is not searched: {failed} of its documents failed and {embedded} were embedded; "
        f"search keeps generation {collection.generation}. Fix the cause (their last_error) and requeue the "
        "failed documents, or re-embed again"
    )


# A worker's last warning per collection: idle workers call finish on every empty poll.
_warned: dict[int, str] = {}


def _warn_held_back(collection: Collection, why: str) -> None:
    if _warned.get(collection.pk) != why:
        _warned[collection.pk] = why
        logger.warning("collection %s: %s", collection.name, why)


def finish(collection_id: int) -> bool:
    """Index a backfill that wrote every document and search it; False if not done, held back (`held_back`)
    or the lock is taken."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_xact_lock(%s)", [BUILD_LOCK])
        if not cur.fetchone()[0]:
            return False
        collection = Collection.objects.filter(pk=collection_id).first()
        if collection is None or collection.building_generation is None or outstanding(collection_id):
            return False
        if why := held_back(collection):
            _warn_held_back(collection, why)
            return False
        new = collection.building_generation
        # A first load has no index to keep serving meanwhile: it builds under the final name.
        build_name = collection.index_name if new == collection.generation else f"{collection.index_name}_g{new}"
        _build_settings(cur, collection, new, local=True)
        storage.create_collection_index(collection, generation=new, name=build_name)
        if build_name != collection.index_name:
            cur.execute(f"DROP INDEX IF EXISTS {collection.index_name}")
            cur.execute(f"ALTER INDEX {build_name} RENAME TO {collection.index_name}")
        Collection.objects.filter(pk=collection_id, building_generation=new).update(
            generation=new, building_generation=None, serving=None
        )
    with transaction.atomic():
        Chunk.objects.filter(collection_id=collection_id).exclude(generation=new)._raw_delete(using="default")
    _warned.pop(collection_id, None)
    logger.info("collection %s: generation %d indexed and searched", collection.name, new)
    if new != collection.generation:
        generation_switched.send(sender=Collection, collection_id=collection_id, previous=collection.generation)
    return True


def finish_ready() -> int:
    """Idle workers: finish completed backfills, rebuild stale indexes (redoing dead builds); builds done."""
    ids = list(Collection.objects.filter(building_generation__isnull=False).values_list("pk", flat=True))
    return sum(finish(pk) for pk in ids if not outstanding(pk)) + rebuild_stale()


def _build_settings(cur: Any, collection: Collection, generation: int, local: bool) -> None:
    """Memory and parallel workers for an index build, for the transaction or (`local` False) the session."""
    cur.execute(
        "SELECT set_config('maintenance_work_mem', %s, %s), set_config('max_parallel_maintenance_workers', %s, %s)",
        [build_memory(collection, generation), local, str(settings.EMBEDPORTAL_INDEX_BUILD_WORKERS), local],
    )


@contextmanager
def build_lock() -> Iterator[bool]:
    """Hold BUILD_LOCK for this session (a rebuild spans transactions); yields whether it was free (reentrant)."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", [BUILD_LOCK])
        held = cur.fetchone()[0]
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", [BUILD_LOCK])


def rebuild_index(collection_id: int) -> bool:
    """Rebuild the index with its HNSW parameters, outside a transaction; False if locked out or backfilling."""
    if connection.in_atomic_block:
        raise RuntimeError("an index rebuild runs CREATE INDEX CONCURRENTLY: call it outside a transaction")
    with build_lock() as held:
        return held and _rebuild(Collection.objects.get(pk=collection_id))


def _rebuild(collection: Collection) -> bool:
    temporary = f"{collection.index_name}{REBUILD_SUFFIX}"
    if collection.building_generation is not None:
        return False
    wanted = (collection.hnsw_m, collection.hnsw_ef_construction, collection.generation)
    with connection.cursor() as cur:
        cur.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {temporary}")  # left by a rebuild that died
        _build_settings(cur, collection, collection.generation, local=False)
        try:
            cur.execute(storage.index_definition(collection, collection.generation, temporary, concurrently=True))
        except Exception:
            # Drop the invalid index every insert would pay for; if that fails too, report the first error.
            with suppress(Error):
                cur.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {temporary}")
            raise
        finally:
            cur.execute("RESET maintenance_work_mem")
            cur.execute("RESET max_parallel_maintenance_workers")
        with transaction.atomic():
            # The row lock orders this swap with begin_first_load/begin_backfill/begin_reembed, and a
            # concurrent edit of the parameters: the new index must still be the one wanted.
            current = Collection.objects.select_for_update(no_key=True).get(pk=collection.pk)  # as begin_reembed
            still_wanted = (current.hnsw_m, current.hnsw_ef_construction, current.generation) == wanted
            swapped = current.building_generation is None and still_wanted
            if swapped:
                cur.execute(f"DROP INDEX IF EXISTS {collection.index_name}")
                cur.execute(f"ALTER INDEX {temporary} RENAME TO {collection.index_name}")
                # An optimizer change of these parameters is measured from now (pipeline.performance.optimizer.changes).
                OptimizationChange.objects.pending().filter(collection=collection, setting="hnsw").update(
                    applied_at=timezone.now()
                )
        if not swapped:
            cur.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {temporary}")
            return False
    logger.info(
        "collection %s: index rebuilt with m=%d, ef_construction=%d",
        collection.name,
        collection.hnsw_m,
        collection.hnsw_ef_construction,
    )
    return True


def stale_indexes() -> tuple[list[int], list[str]]:
    """(collections whose index has other HNSW parameters than theirs, leftovers of dead rebuilds);
    collections being backfilled are left to `finish`, a missing index is not rebuilt."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.id, c.hnsw_m, c.hnsw_ef_construction, i.reloptions FROM pipeline_collection c "
            "JOIN pg_class i ON i.relname = 'pipeline_chunk_hnsw_' || c.id AND i.relkind = 'i' "
            "WHERE c.building_generation IS NULL"
        )
        stale = [
            pk
            for pk, m, ef_construction, reloptions in cur.fetchall()
            if storage.parse_options(reloptions) != {"m": m, "ef_construction": ef_construction}
        ]
        cur.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'i' AND relname ~ %s",
            [f"^pipeline_chunk_hnsw_[0-9]+{REBUILD_SUFFIX}$"],
        )
        return stale, [row[0] for row in cur.fetchall()]


def rebuild_stale() -> int:
    """Rebuild every index `stale_indexes` finds; 0 inside a transaction or while another build holds the lock."""
    stale, leftovers = stale_indexes()
    if not (stale or leftovers) or connection.in_atomic_block:
        return 0
    with build_lock() as held:
        if not held:
            return 0
        with connection.cursor() as cur:
            for name in leftovers:  # nobody builds them: we hold the lock
                cur.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        rebuilt = 0
        for pk in stale:
            try:
                rebuilt += _rebuild(Collection.objects.get(pk=pk))
            except DatabaseError:  # e.g. the deadlock a concurrent CREATE/DROP INDEX resolves against it
                logger.exception("collection %s: index rebuild failed; an idle worker tries again", pk)
        return rebuilt
