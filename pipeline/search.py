"""Semantic search over one collection, through its HNSW index."""

from __future__ import annotations

from pipeline import storage
from pipeline.embedding import embed_texts
from pipeline.models import Collection


def search(collection: Collection, query: str, k: int = 5) -> list[storage.Hit]:
    """Embed `query` with the collection's model and return the k nearest chunks, best first."""
    vector = embed_texts(collection, [query])[0]
    return storage.nearest(collection, vector, k)
