"""The search benchmark: k-nearest queries through the real search path on a large collection
(notes: docs/benchmarks.md, "Module notes")."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from django.db import connection, transaction

from pipeline import backfill, providers, storage
from pipeline.choices import SearchMode
from pipeline.collections import create_collection
from pipeline.models import Chunk, Collection, reserved_names
from pipeline.search import search

CHUNKS_PER_DOCUMENT = 100


@dataclass
class SearchFigures:
    chunks: int
    queries: int
    k: int
    mode: str = SearchMode.VECTOR
    load_seconds: float = 0.0
    index_build_seconds: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    mean_ms: float = 0.0
    uses_index: bool = False
    plan: str = ""
    recall_at_k: float | None = None
    samples_ms: list[float] = field(default_factory=list)


def chunk_text(i: int) -> str:
    return f"benchmark chunk {i}: a passage about topic {i % 997} and subject {i % 101}"


def build(name: str, chunks: int, dims: int = 384) -> tuple[Collection, float, float]:
    """A collection of `chunks` chunks of hash vectors: (collection, seconds to load, seconds to index)."""
    Collection.objects.filter(name=name).delete()
    with reserved_names():
        collection = create_collection(name=name, model=f"local/hash-{dims}", chunk_unit="characters", chunk_size=1000)
    documents = max(1, -(-chunks // CHUNKS_PER_DOCUMENT))
    t0 = time.perf_counter()
    storage._register_vector()  # before the cursor: it copies the connection's adapters
    with transaction.atomic(), connection.cursor() as cur:
        # Written as a first load: no index while the rows go in, one build at the end.
        Collection.objects.filter(pk=collection.pk).update(building_generation=1)
        storage.drop_collection_index(collection)
        cur.execute(
            "INSERT INTO pipeline_document (collection_id, external_id, text, content_hash, metadata, status, "
            "attempts, last_error, lease_owner, enqueued_at, available_at, created_at, updated_at, last_embedded_at) "
            "SELECT %s, 'doc-' || g, 'benchmark document ' || g, md5(g::text), '{}'::jsonb, 'embedded', 1, '', '', "
            "now(), now(), now(), now(), now() FROM generate_series(0, %s - 1) g RETURNING id",
            [collection.pk, documents],
        )
        ids = [row[0] for row in cur.fetchall()]
        with cur.cursor.copy(storage.COPY_CHUNKS) as copy:
            copy.set_types(storage.COPY_TYPES)
            step = 5000
            for start in range(0, chunks, step):
                texts = [chunk_text(i) for i in range(start, min(chunks, start + step))]
                vectors = providers.hash_vectors(texts, dims)
                for i, (text, vector) in enumerate(zip(texts, vectors, strict=True), start):
                    document, ordinal = divmod(i, CHUNKS_PER_DOCUMENT)
                    title, section = f"benchmark document {document}", f"section {i % 7}"
                    copy.write_row((ids[document], collection.pk, 1, ordinal, text, 12, vector, title, section))
    load_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    if not backfill.finish(collection.pk):
        raise RuntimeError(f"could not build the index of {name} (another index build holds the lock)")
    index_seconds = time.perf_counter() - t0
    with connection.cursor() as cur:
        cur.execute("ANALYZE pipeline_chunk, pipeline_document")
    collection.refresh_from_db()
    return collection, load_seconds, index_seconds


def explain(call: Callable[[], object], *settings: str) -> str:
    """The plan of exactly the chunk query `call` runs (search() or storage.nearest()), EXPLAINed
    after `settings` (SET LOCAL statements) in one transaction."""
    executed: list[tuple[str, object]] = []

    def record(execute, sql, params, many, context):
        executed.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        call()
    sql, params = next((s, p) for s, p in executed if "pipeline_chunk" in s)
    with transaction.atomic(), connection.cursor() as cur:
        for statement in settings:
            cur.execute(statement)
        cur.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cur.fetchall())


def exact(collection: Collection, query: str, k: int) -> list[tuple[str, int]]:
    """The true k nearest, by a scan of the whole generation (the index not used)."""
    vector = providers.hash_vectors([query], int(collection.dimensions))[0]
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL enable_indexscan = off")
        return [(h.document_id, h.ordinal) for h in storage.nearest(collection, vector, k)]


def measure(
    collection: Collection, queries: int, k: int, recall_queries: int = 20, seed: int = 0, mode: str = SearchMode.VECTOR
) -> SearchFigures:
    """Latency of `queries` searches in `mode`; recall against an exact scan for vector search only."""
    chunks = Chunk.objects.filter(collection=collection, generation=collection.generation).count()
    rng = random.Random(seed)
    # Queries near stored chunks, not equal to them: a real query is never a stored passage.
    texts = [chunk_text(rng.randrange(chunks)) + " ?" for _ in range(queries)]
    figures = SearchFigures(chunks=chunks, queries=queries, k=k, mode=mode)
    for text in texts[:5]:  # warm the index pages and the connection
        search(collection, text, k, mode=mode)
    samples = []
    for text in texts:
        t0 = time.perf_counter()
        search(collection, text, k, mode=mode)
        samples.append((time.perf_counter() - t0) * 1000)
    figures.samples_ms = [round(s, 3) for s in samples]
    figures.p50_ms, figures.p95_ms, figures.p99_ms = (round(float(np.percentile(samples, q)), 2) for q in (50, 95, 99))
    figures.mean_ms = round(float(np.mean(samples)), 2)
    # search() sets the collection's ef_search in its own transaction: the same for the EXPLAIN.
    ef_search = f"SET LOCAL hnsw.ef_search = {int(storage.ef_search(collection, k))}"
    figures.plan = explain(lambda: search(collection, texts[0], k, mode=mode), ef_search)
    # The first chunk query: the HNSW scan (vector, hybrid) or keyword's GIN match counts.
    index = "pipeline_chunk_search_gin" if mode == SearchMode.KEYWORD else f"Index Scan using {collection.index_name}"
    figures.uses_index = index in figures.plan
    if recall_queries and mode == SearchMode.VECTOR:
        found = sum(
            len(set(exact(collection, text, k)) & {(h.document_id, h.ordinal) for h in search(collection, text, k)})
            for text in texts[:recall_queries]
        )
        figures.recall_at_k = round(found / (recall_queries * k), 4)
    return figures
