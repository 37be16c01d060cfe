"""Search over one collection, through its HNSW index."""

from __future__ import annotations

import time

from pipeline import recording, storage
from pipeline.backfill import serving
from pipeline.embedding import embed_texts
from pipeline.models import Collection

# Grouped by document, a search ranks this many chunks per document asked for (at most
# storage.MAX_CANDIDATES): enough for k distinct documents when a page's chunks crowd the top.
CHUNKS_PER_DOCUMENT = 10


def search(
    collection: Collection, query: str, k: int = 5, source: str = "other", by_document: bool = False
) -> list[storage.Hit]:
    """Embed `query` with the collection's model and return the k nearest chunks, best first (with
    `by_document`, the k best documents, each as its best chunk). The call's seconds go to
    embedding_pipeline_search_seconds{source} (api, cli or other) and to the collection's latest
    search times (the optimizer's per-collection search p95); source "" records nothing (evaluations)."""
    started = time.perf_counter()
    collection = serving(collection)  # during a re-embed: the old model, the old generation
    vector = embed_texts(collection, [query])[0]
    if by_document:
        hits = best_per_document(storage.nearest(collection, vector, storage.candidates(k * CHUNKS_PER_DOCUMENT)))[:k]
    else:
        hits = storage.nearest(collection, vector, k)
    if source:
        recording.record_search(collection, time.perf_counter() - started, source)
    return hits


def best_per_document(hits: list[storage.Hit]) -> list[storage.Hit]:
    """Each document once, as its best-ranked chunk, in rank order."""
    seen: set[str] = set()
    return [h for h in hits if not (h.document_id in seen or seen.add(h.document_id))]
