"""Optional reranking of a search's best candidates by a rerank model served through LiteLLM
(`litellm.rerank`: Cohere, Voyage, Jina, any Cohere-compatible /v1/rerank), behind a circuit
breaker and timeout as embedding calls are. A reranker that fails, or whose circuit is open, leaves
the candidates in their search order: search degrades, never fails, and the fallback is counted."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from django.conf import settings
from django.utils import timezone

from pipeline import metrics, providers, storage, waits
from pipeline.choices import CircuitState, ErrorType, Stage
from pipeline.embedding import OUTAGE, PipelineError, classify, endpoint_args
from pipeline.failures import advisory, count_outage
from pipeline.models import Collection, ProviderCircuit, endpoint_label

logger = logging.getLogger(__name__)


# LiteLLM logs a failed rerank at ERROR with the provider's raw answer, which may echo the API key;
# rerank's warning says the same, scrubbed.
logging.getLogger("LiteLLM").addFilter(lambda record: not str(record.msg).startswith("Error in rerank"))

CANDIDATES = 50  # chunks sent to the reranker: its cost and latency grow with them


@dataclass(frozen=True)
class Endpoint:
    """A rerank endpoint as the circuit breaker keys one (ProviderCircuit: model + api_base)."""

    model: str
    api_base: str


def rerank(collection: Collection, query: str, hits: list[storage.Hit]) -> list[storage.Hit]:
    """The first CANDIDATES hits reordered by the collection's rerank model (their score its
    relevance score), the rest after them; unchanged without a rerank model or on a fallback."""
    if not collection.rerank_model or not hits:
        return hits
    endpoint = Endpoint(collection.rerank_model, collection.rerank_api_base)
    circuits = ProviderCircuit.objects.endpoint(endpoint)
    # Open until its wait is over; then the next search's call is the probe.
    circuit = advisory(circuits.first, None)
    if circuit is not None and circuit.waiting:
        return _fallback(hits, "circuit_open")
    head = hits[:CANDIDATES]
    try:
        ranked = _ranked(collection, query, [h.text for h in head])
    except PipelineError as exc:
        if exc.error_type in OUTAGE:
            _record_failure(endpoint, exc.error_type)
        logger.warning("reranker %s failed, search order served: %s", endpoint_label(endpoint), exc)
        return _fallback(hits, exc.error_type)
    # An answer breaks a run of failures and closes an open circuit (this call was its probe).
    advisory(lambda: circuits.exclude(state=CircuitState.CLOSED, consecutive_failures=0)._closed(), 0)
    chosen = [replace(head[i], score=score) for i, score in ranked]
    picked = {i for i, _ in ranked}
    return chosen + [h for i, h in enumerate(head) if i not in picked] + hits[CANDIDATES:]


def _fallback(hits: list[storage.Hit], reason: str) -> list[storage.Hit]:
    metrics.RERANK_FALLBACKS.labels(reason=reason).inc()
    return hits


def _record_failure(endpoint: Endpoint, error_type: str) -> None:
    """Count toward the endpoint's circuit (EMBEDPORTAL_CIRCUIT_FAILURES in a row open it); a failed
    probe of an open circuit keeps it open for another wait."""
    if count_outage(endpoint, error_type) != CircuitState.CLOSED:
        now, wait = timezone.now(), waits.circuit_wait()
        due = ProviderCircuit.objects.endpoint(endpoint).filter(next_probe_at__lte=now)
        advisory(lambda: due.update(next_probe_at=now + wait, updated_at=now), 0)


def _ranked(collection: Collection, query: str, texts: list[str]) -> list[tuple[int, float]]:
    """(index into `texts`, relevance score), best first, from one litellm.rerank call; raises PipelineError."""
    import litellm

    providers.register()
    endpoint, key = endpoint_args(
        collection,
        collection.rerank_model,
        collection.rerank_api_base,
        collection.rerank_api_key_env,
        f"the reranker of collection {collection.name!r}",
    )
    try:
        response = litellm.rerank(
            model=collection.rerank_model,
            query=query,
            documents=texts,
            top_n=len(texts),
            timeout=settings.EMBEDPORTAL_SEARCH_PROVIDER_TIMEOUT,
            return_documents=False,
            **endpoint,
        )
        ranked = [(int(r["index"]), float(r["relevance_score"])) for r in response.results or []]
    except Exception as exc:  # noqa: BLE001 -- every provider error is classified, none escapes raw
        raise classify(exc, key) from None
    if any(not 0 <= i < len(texts) for i, _ in ranked) or len({i for i, _ in ranked}) < len(ranked):
        raise PipelineError(ErrorType.WRONG_COUNT, Stage.EMBEDDING, "reranker answered unknown or repeated indexes")
    return sorted(ranked, key=lambda pair: -pair[1])
