"""Search over one collection: vector (its HNSW index), keyword (pipeline.keyword) or hybrid
(both rankings fused by a weighted blend of normalised scores, or reciprocal-rank fusion), the best
candidates then reordered by the collection's reranker if it names one (pipeline.rerank)."""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import replace

import numpy as np
from django.conf import settings

from pipeline import encoder, keyword, metrics, recording, rerank, storage
from pipeline.backfill import serving
from pipeline.choices import ErrorType, Fusion, SearchMode, Stage
from pipeline.embedding import PipelineError, embed_texts, provider_of
from pipeline.failures import advisory, count_outage
from pipeline.models import Collection, ProviderCircuit, endpoint_label
from pipeline.providers import LOCAL_MODEL

logger = logging.getLogger(__name__)

# Grouped by document, a search ranks this many chunks per document asked for (at most
# storage.MAX_CANDIDATES): enough for k distinct documents when a page's chunks crowd the top.
CHUNKS_PER_DOCUMENT = 10
# Hybrid search fuses at least this many candidates of each ranking, by fusion: a chunk ranked low by
# one and high by the other must be in both lists to be fused fairly (docs/search.md has the measurements).
FUSION_CANDIDATES = {Fusion.BLEND: 50, Fusion.RRF: 20}
RRF_K = 60  # reciprocal-rank fusion's constant (Cormack et al.)
MAX_QUERY_CHARS = 10_000  # a query's length, for the API and the command alike


class Hits(list[storage.Hit]):
    """A search's results, best first, and the ranking that served them: `mode`, and `fallback`, why a
    hybrid search was served from its keyword ranking alone ("" if it was not)."""

    mode = ""
    fallback = ""


def search(
    collection: Collection,
    query: str,
    k: int = 5,
    source: str = "other",
    by_document: bool = False,
    mode: str | None = None,
    fallback: bool = False,
) -> Hits:
    """The k best chunks for `query`, best first, ranked by `mode` (default: the collection's
    search_mode); with `by_document`, the k best documents, each as its best chunk. With `fallback`
    (people searching: the API and the command), a hybrid search whose query cannot be embedded is
    answered from its keyword ranking and says so; measurements (evaluations, the operations tests)
    fail instead, never scoring one ranking as another. The call's seconds go to
    embedding_pipeline_search_seconds{source} (api, cli or other) and to the collection's latest
    search times (the optimizer's per-collection search p95); source "" records nothing (evaluations)."""
    if serving(collection).model == LOCAL_MODEL:
        # A process's first query compiles the encoder (once): not the search's seconds (the CLI loads
        # LiteLLM and the weights first for the same reason: pipeline.providers.load). Only for the
        # model that uses it: a local/hash collection's search chose and compiled it for nothing.
        encoder.current().warm()
    started = time.perf_counter()
    hits, collection = _retrieved(collection, query, k, by_document, mode, fallback)
    while (current := switched_since(collection)) is not None:
        hits, collection = _retrieved(current, query, k, by_document, mode, fallback)
    ranked = rerank.rerank(collection, query, hits)
    found = Hits(best_per_document(ranked)[:k] if by_document else ranked[:k])
    found.mode, found.fallback = hits.mode, hits.fallback
    if source:
        recording.record_search(collection, time.perf_counter() - started, source)
    return found


def switched_since(collection: Collection) -> Collection | None:
    """The collection as it is now if a re-embed switched its generation since `collection` was read:
    the switch deletes the generation read, whose rows a query then found empty (one PK lookup)."""
    now = Collection.objects.filter(pk=collection.pk).values_list("generation", flat=True).first()
    return None if now in (None, collection.generation) else Collection.objects.filter(pk=collection.pk).first()


def _retrieved(
    collection: Collection, query: str, k: int, by_document: bool, mode: str | None, fallback: bool
) -> tuple[Hits, Collection]:
    """The candidates to rerank, ranked by `mode` in the generation `collection` names, and the collection as
    searched (during a re-embed: the old model, the old generation)."""
    # A re-embed for a change of the local model's runtime: the old generation's runtime embeds the query.
    runtime = (collection.serving or {}).get("local_encoder")
    collection = serving(collection)
    mode = mode or collection.search_mode
    wanted = min(k * CHUNKS_PER_DOCUMENT if by_document else k, storage.MAX_CANDIDATES)
    pool = max(wanted, FUSION_CANDIDATES[collection.fusion]) if mode == SearchMode.HYBRID else wanted
    if collection.rerank_model:
        pool = max(pool, rerank.CANDIDATES)
    vector_hits = keyword_hits = []
    reason = ""
    if mode != SearchMode.KEYWORD:
        try:
            vector_hits = storage.nearest(collection, _query_vector(collection, query, runtime), pool)
        except PipelineError as exc:
            if mode == SearchMode.VECTOR or not fallback:
                raise
            reason = "circuit_open" if exc.circuit_open else exc.error_type
            metrics.SEARCH_FALLBACKS.labels(reason=reason).inc()
            if not exc.circuit_open:  # searches an open circuit refuses are counted, not logged (hundreds a minute)
                logger.warning("collection %s: hybrid search served by keywords alone: %s", collection.name, exc)
            mode = SearchMode.KEYWORD
    if mode != SearchMode.VECTOR:
        # Beside a vector ranking, filling the keyword one up to the pool would add only chunks of common
        # terms, read in no order, and cost a scan of their index entries (docs/search.md).
        keyword_hits = keyword.matches(collection, query, pool, fill=mode == SearchMode.KEYWORD)
    if mode == SearchMode.HYBRID:
        hits = Hits(fuse(vector_hits, keyword_hits, collection.keyword_weight, collection.fusion))
    else:
        hits = Hits(vector_hits or keyword_hits)
    hits.mode, hits.fallback = mode, reason
    return hits, collection


def _query_vector(collection: Collection, query: str, runtime: str | None) -> np.ndarray:
    """The query's vector. A provider's call waits EMBEDPORTAL_SEARCH_PROVIDER_TIMEOUT at most and counts
    toward the endpoint's circuit as the workers' calls do; none is made while the circuit is open (one
    of the workers probes it when its wait is over). Each search used to wait out the provider's 60 s,
    holding a web worker, and a hanging provider took the whole API down with it: an outage soak of
    `make run`'s stack timed out every other request until the workers' own calls, a minute each,
    opened the circuit four and a half minutes later."""
    if provider_of(collection.model) == "local":  # the bundled model: no provider, no circuit
        with encoder.using(encoder.for_label(runtime)) if runtime else nullcontext():
            return embed_texts(collection, [query])[0]
    circuit = advisory(ProviderCircuit.objects.endpoint(collection).first, None)
    if circuit is not None and circuit.waiting:
        exc = PipelineError(
            ErrorType.API_ERROR,
            Stage.EMBEDDING,
            f"the provider circuit of {endpoint_label(collection)} is open (its provider is failing); a worker "
            "probes it when its wait is over",
        )
        exc.circuit_open = True
        raise exc
    try:
        vector = embed_texts(collection, [query], settings.EMBEDPORTAL_SEARCH_PROVIDER_TIMEOUT)[0]
    except PipelineError as exc:
        # Not a 429: a busy quota is no outage, and the workers wait out their own throttling.
        if exc.error_type in (ErrorType.API_ERROR, ErrorType.TIMEOUT):
            count_outage(collection, exc.error_type)
        raise
    if circuit is not None and circuit.consecutive_failures:  # a run of failures to break (no write otherwise)
        advisory(lambda: ProviderCircuit.objects.record_success(collection), 0)
    return vector


def _normalised(hits: list[storage.Hit]) -> dict[tuple[str, int], float]:
    """Scores rescaled to 0..1 within their ranking (min-max), by chunk."""
    if not hits:
        return {}
    high, low = hits[0].score, hits[-1].score
    return {(h.document_id, h.ordinal): (h.score - low) / (high - low) if high > low else 1.0 for h in hits}


def fuse(
    vector_hits: list[storage.Hit], keyword_hits: list[storage.Hit], weight: float, fusion: str = Fusion.BLEND
) -> list[storage.Hit]:
    """One ranking from two: `weight` is the keyword ranking's share. A blend adds normalised
    scores; reciprocal-rank fusion adds (RRF_K + 1) / (RRF_K + rank), scaled so that a first place
    scores 1 as in the blend (a chunk first in both rankings scores 1 either way: callers and the
    canary read a score near 1 as "its own text"). A chunk missing from a ranking adds 0."""
    chunks = {(h.document_id, h.ordinal): h for h in (*keyword_hits, *vector_hits)}
    if fusion == Fusion.RRF:
        vector = {(h.document_id, h.ordinal): (RRF_K + 1) / (RRF_K + rank) for rank, h in enumerate(vector_hits, 1)}
        words = {(h.document_id, h.ordinal): (RRF_K + 1) / (RRF_K + rank) for rank, h in enumerate(keyword_hits, 1)}
    else:
        vector, words = _normalised(vector_hits), _normalised(keyword_hits)
    scored = {key: (1 - weight) * vector.get(key, 0.0) + weight * words.get(key, 0.0) for key in chunks}
    order = sorted(scored, key=lambda key: -scored[key])
    return [replace(chunks[key], score=scored[key]) for key in order]


def best_per_document(hits: list[storage.Hit]) -> list[storage.Hit]:
    """Each document once, as its best-ranked chunk, in rank order."""
    seen: set[str] = set()
    return [h for h in hits if not (h.document_id in seen or seen.add(h.document_id))]
