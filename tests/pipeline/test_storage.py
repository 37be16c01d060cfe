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
        storage.Embedded(good.pk, hash_collection.pk, good.content_hash, chunks, np.ones((2, 16), np.float32)),
        # A wrong-dimension vector (past the quality gate) makes the index cast fail mid-COPY.
        storage.Embedded(bad.pk, hash_collection.pk, bad.content_hash, chunks, np.ones((2, 17), np.float32)),
    ]

    with pytest.raises((DataError, psycopg.DataError), match="expected 16 dimensions"):
        storage.store("w", results, embedded_at=None)

    after = list(Chunk.objects.filter(document__external_id="a").order_by("ordinal").values_list("text", "embedding"))
    assert [t for t, _ in after] == [t for t, _ in before]
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(after, before, strict=True))
    assert set(Document.objects.values_list("status", flat=True)) == {"processing"}


def test_collections_with_different_dimensions_coexist(db):
    small = create_collection(
        name="small", model="local/hash-8", chunk_unit="characters", chunk_size=100, chunk_overlap=0
    )
    large = create_collection(
        name="large", model="local/hash-64", chunk_unit="characters", chunk_size=100, chunk_overlap=0
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


def test_search_uses_the_collection_hnsw_index(hash_collection):
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"text {i}") for i in range(20)])
    EmbeddingIngestionPipeline().drain()
    vector = "[" + ",".join(["0.1"] * 16) + "]"
    with connection.cursor() as cur:
        # Tiny table: make the planner choose by capability (an ordered index scan), not cost.
        cur.execute("SET enable_seqscan = off")
        cur.execute("SET enable_sort = off")
        cur.execute(
            "EXPLAIN SELECT id FROM pipeline_chunk WHERE collection_id = %s "
            "ORDER BY embedding::vector(16) <=> %s::vector(16) LIMIT 5",
            [hash_collection.pk, vector],
        )
        plan = "\n".join(row[0] for row in cur.fetchall())
        cur.execute("RESET enable_seqscan")
        cur.execute("RESET enable_sort")
    assert hash_collection.index_name in plan


def test_deleting_a_collection_drops_its_index_and_rows(hash_collection):
    enqueue(hash_collection, [IncomingDocument("a", "some text")])
    EmbeddingIngestionPipeline().drain()
    name = hash_collection.index_name
    assert name in index_names()

    Collection.objects.get(pk=hash_collection.pk).delete()

    assert name not in index_names()
    assert not Chunk.objects.exists() and not Document.objects.exists()
