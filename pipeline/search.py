"""Semantic search over one collection, through its HNSW index."""

from __future__ import annotations

import time

from pipeline import metrics, storage, timings
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
    seconds = time.perf_counter() - started
    metrics.SEARCH_LATENCY.labels(source=source).observe(seconds)
    if not collection.is_reserved:  # scratch collections stay out of the optimizer's figures, as their batches do
        timings.record_search(collection.pk, seconds)
    return hits
