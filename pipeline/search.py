"""Semantic search over one collection, through its HNSW index."""

from __future__ import annotations

import time

from pipeline import recording, storage
from pipeline.backfill import serving
from pipeline.embedding import embed_texts
from pipeline.models import Collection


def search(collection: Collection, query: str, k: int = 5, source: str = "other") -> list[storage.Hit]:
    """Embed `query` with the collection's model and return the k nearest chunks, best first; the
    call's seconds go to embedding_pipeline_search_seconds{source} (api, cli or other) and to the
    collection's latest search times (the optimizer's per-collection search p95)."""
    started = time.perf_counter()
    collection = serving(collection)  # during a re-embed: the old model, the old generation
    vector = embed_texts(collection, [query])[0]
    hits = storage.nearest(collection, vector, k)
    recording.record_search(collection, time.perf_counter() - started, source)
    return hits
