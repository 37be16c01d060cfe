from __future__ import annotations

import numpy as np
import psycopg
import pytest
from django.db import DataError, connection

from pipeline import storage
from pipeline.chunking import ChunkText
from pipeline.collections import create_collection
from pipeline.models import Chunk, Collection, Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from pipeline.search import search

pytestmark = pytest.mark.django_db


def index_names() -> set[str]:
    with connection.cursor() as cur:
        cur.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'pipeline_chunk'")
        return {row[0] for row in cur.fetchall()}


def test_failed_write_leaves_previous_chunks_untouched(hash_collection):
    enqueue(hash_collection, [IncomingDocument("a", "first version " * 40), IncomingDocument("b", "b " * 40)])
    EmbeddingIngestionPipeline().drain()
    before = list(Chunk.objects.filter(document__external_id="a").order_by("ordinal").values_list("text", "embedding"))
    enqueue(hash_collection, [IncomingDocument("a", "second version " * 40), IncomingDocument("b", "b2 " * 40)])
    docs = Document.objects.claim("w", 10, EmbeddingIngestionPipeline().lease)
    good, bad = docs
    chunks = [ChunkText(0, "x", 1), ChunkText(1, "y", 1)]
    results = [
        (good, chunks, np.ones((2, 16), np.float32)),
        # A wrong-dimension vector (past the quality gate) makes the index cast fail mid-COPY.
        (bad, chunks, np.ones((2, 17), np.float32)),
    ]

    with pytest.raises((DataError, psycopg.DataError), match="expected 16 dimensions"):
        storage.store("w", results, embedded_at=None)

    after = list(Chunk.objects.filter(document__external_id="a").order_by("ordinal").values_list("text", "embedding"))
    assert [t for t, _ in after] == [t for t, _ in before]
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(after, before, strict=True))
    assert set(Document.objects.values_list("status", flat=True)) == {"processing"}


def test_a_row_the_database_refuses_fails_its_document_alone(hash_collection, monkeypatch):
    """A tsvector over PostgreSQL's 1 MB (ProgramLimitExceeded, an OperationalError) was taken for a lost
    connection: retried three times, then the whole batch failed, ten innocent documents with it, at
    every scheduled retry (an adversarial-input soak)."""
    from reprocessing.models import FailedDocument

    real, calls = storage.store, []

    def store(worker, results, embedded_at):
        calls.append(len(results))
        if any(doc.external_id == "bad" for doc, _, _ in results):
            raise psycopg.errors.ProgramLimitExceeded("string is too long for tsvector (1427196 bytes, max 1048575)")
        return real(worker, results, embedded_at)

    monkeypatch.setattr(storage, "store", store)
    enqueue(hash_collection, [IncomingDocument(i, f"document {i} " * 20) for i in ("a", "bad", "c", "d")])
    report = EmbeddingIngestionPipeline().drain()
    assert (report.embedded, report.failed) == (3, 1)
    assert calls == [4, 1, 1, 1, 1], "the batch once, then each document alone; no retry of a refused row"
    statuses = dict(Document.objects.values_list("external_id", "status"))
    assert statuses == {"a": "embedded", "bad": "failed", "c": "embedded", "d": "embedded"}
    failure = FailedDocument.objects.get()
    assert failure.document.external_id == "bad" and failure.error_type == "bad_request"
    assert "ProgramLimitExceeded: string is too long for tsvector" in failure.document.last_error


def test_collections_with_different_dimensions_coexist(db):
    small, large = (
        create_collection(
            name=name,
            model=f"local/hash-{dimensions}",
            chunk_unit="characters",
            chunk_size=100,
            chunk_overlap=0,
            contextual_chunks=False,
        )
        for name, dimensions in (("small", 8), ("large", 64))
    )
    for c in (small, large):
        enqueue(c, [IncomingDocument(f"{c.name}-{i}", f"{c.name} document {i}") for i in range(5)])
    assert EmbeddingIngestionPipeline().drain().embedded == 10

    assert {small.index_name, large.index_name} <= index_names()
    assert {len(e) for e in Chunk.objects.filter(collection=small).values_list("embedding", flat=True)} == {8}
    assert {len(e) for e in Chunk.objects.filter(collection=large).values_list("embedding", flat=True)} == {64}
    # Equal text gets an equal (hash) vector: each collection finds its own copy, and only its own.
    assert search(small, "small document 3", 1)[0].document_id == "small-3"
    assert search(large, "large document 2", 1)[0].document_id == "large-2"
    assert all(h.document_id.startswith("large") for h in search(large, "small document 3", 5))


def fill(collection: Collection, chunks: int) -> None:
    """One document with `chunks` chunks of deterministic vectors of the collection's dimension."""
    enqueue(collection, [IncomingDocument(f"{collection.name}-bulk", "bulk")])
    document = Document.objects.get(collection=collection)
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pipeline_chunk (document_id, collection_id, ordinal, text, token_count, embedding) "
            "SELECT %s, %s, g, 'chunk ' || g, 1, "
            "       (SELECT array_agg(sin(g * 7919 + i))::vector FROM generate_series(1, %s) i) "
            "  FROM generate_series(0, %s - 1) g",
            [document.pk, collection.pk, collection.dimensions, chunks],
        )


def test_the_search_sql_nearest_runs_is_planned_on_the_collection_hnsw_index(hash_collection):
    # Another collection of another dimension shares pipeline_chunk: only the collection filter and
    # the cast to 16 dimensions let the planner use hash_collection's partial expression index.
    other = create_collection(name="other", model="local/hash-8")
    fill(hash_collection, 3000)
    fill(other, 3000)
    with connection.cursor() as cur:
        cur.execute("ANALYZE pipeline_chunk")
        cur.execute("ANALYZE pipeline_document")

    executed: list[tuple[str, object]] = []

    def record(execute, sql, params, many, context):
        executed.append((sql, params))
        return execute(sql, params, many, context)

    query = np.asarray([np.sin(5 * 7919 + i) for i in range(1, 17)], dtype=np.float32)  # chunk 5's vector
    with connection.execute_wrapper(record):
        hits = storage.nearest(hash_collection, query, 5)
    assert hits[0].text == "chunk 5" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert len(hits) == 5 and all(h.document_id == "hashes-bulk" for h in hits)
    [(sql, params)] = [(s, p) for s, p in executed if "pipeline_chunk" in s]

    # EXPLAIN exactly that statement with exactly those parameters, planner settings untouched:
    # with 3000 rows per collection the ordered index scan is the cheapest plan, no seq scan forced off.
    with connection.cursor() as cur:
        cur.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cur.fetchall())
    assert f"Index Scan using {hash_collection.index_name} on pipeline_chunk" in plan, plan
    assert "Order By: ((embedding)::vector(16) <=> " in plan, plan
    assert "Sort" not in plan and "Seq Scan on pipeline_chunk" not in plan, plan
    assert other.index_name not in plan


def test_deleting_a_collection_drops_its_index_and_rows(hash_collection):
    enqueue(hash_collection, [IncomingDocument("a", "some text")])
    EmbeddingIngestionPipeline().drain()
    name = hash_collection.index_name
    assert name in index_names()

    Collection.objects.get(pk=hash_collection.pk).delete()

    assert name not in index_names()
    assert not Chunk.objects.exists() and not Document.objects.exists()
