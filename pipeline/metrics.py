"""Prometheus metrics recorded by the pipeline (through pipeline.recording), multiprocess-safe, and the
error counts read back for the admin overview. Figures derived from the database are computed at
scrape time by pipeline.collectors, so they are exact whichever process is scraped."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from embedportal.metrics import process_registry
from pipeline.choices import ErrorType

# Per-stage seconds; 30 s is a bucket because the latency SLO is "p95 per document < 30 s".
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# Embedded time minus source modified time (the distribution; the freshness SLO counts FRESHNESS,
# judged against each collection's own freshness_sla).
FRESHNESS_BUCKETS = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600, 86400, 604800)

# The three per-document series carry the collection (tens, chosen by operators: a safe label), so
# Grafana and the alerts can say which collection fails or is slow. `bulk` ("true" for a batch claimed
# during a first load, backfill or re-embed: BatchTiming.bulk) keeps those out of the latency SLO: a
# first load of big pages on the local model took 30 s and more a batch and paged LatencyFastBurn.
LATENCY = Histogram(
    "embedding_pipeline_latency_seconds",
    "Seconds spent per document in each pipeline stage (chunking, embedding, storage) and in total, by "
    "collection and whether the batch was claimed during a bulk load (bulk: true, false).",
    ["stage", "collection", "bulk"],
    buckets=LATENCY_BUCKETS,
)
ERRORS = Counter(
    "embedding_pipeline_errors",
    "Pipeline errors by type and collection (each failed attempt counts, retries included).",
    ["error_type", "collection"],
)
DOCUMENTS = Counter(
    "embedding_pipeline_documents_processed",
    "Documents that finished a pipeline attempt, by outcome (embedded, failed, superseded, deferred) and collection.",
    ["outcome", "collection"],
)
CHUNKS = Counter("embedding_pipeline_chunks_embedded", "Chunks embedded and stored.")
FRESHNESS_LAG = Histogram(
    "embedding_pipeline_freshness_lag_seconds",
    "Seconds from a document's source modification to its embedding being stored.",
    buckets=FRESHNESS_BUCKETS,
)

FRESHNESS = Counter(
    "embedding_pipeline_freshness_judged",
    "Stored documents with a source modified time, by collection and whether their lag (embedded minus "
    "source modified time) was within the collection's freshness SLA (within_sla: true, false).",
    ["collection", "within_sla"],
)
OUTCOMES = ("embedded", "failed", "superseded", "deferred")
_declared: set[str] = set()


def declare(collections: set[str]) -> None:
    """Each collection's per-document counters at 0 before their first increment (called at scrape time):
    a series born at its first increment shows Prometheus its value N at once, and rate() and increase()
    never see those N. A provider outage's first errors, often all it has before its circuit opens, were
    invisible to the error-rate alert. The search histogram's sources too: a drill's first API search of
    the hour was never in the search latency SLO's rate()."""
    for source in SEARCH_SOURCES:
        SEARCH_LATENCY.labels(source=source)
    for name in collections - _declared:
        for error_type in ErrorType.values:
            ERRORS.labels(error_type=error_type, collection=name)
        for outcome in OUTCOMES:
            DOCUMENTS.labels(outcome=outcome, collection=name)
        for within in ("true", "false"):
            FRESHNESS.labels(collection=name, within_sla=within)
        LATENCY.labels(stage="total", collection=name, bulk="false")  # the latency SLO's series
        _declared.add(name)


# Seconds of a queue wait (enqueued -> claimed): from a busy worker's instant to a day of backlog.
WAIT_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600, 86400)
# Short operations: one query, one provider call, one scrape, one health check.
CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# Worker time per stage, once per batch: rate(...) / workers is each stage's utilisation (the
# per-document histogram above counts a batch's time once per document, so its sum is not worker time).
STAGE_BUSY = Counter(
    "embedding_pipeline_stage_busy_seconds",
    "Worker seconds spent in each stage (claim, chunking, embedding, storage), counted once per batch.",
    ["stage"],
)
CLAIM_LATENCY = Histogram(
    "embedding_pipeline_claim_seconds", "Seconds one claim query took (empty claims included).", buckets=CALL_BUCKETS
)
QUEUE_WAIT = Histogram(
    "embedding_pipeline_queue_wait_seconds",
    "Seconds from a document's enqueued_at (its version entering the queue) to a worker claiming it, "
    "once per claim (a retry's backoff included).",
    buckets=WAIT_BUCKETS,
)
PROVIDER_CALL = Histogram(
    "embedding_pipeline_provider_call_seconds",
    "Seconds one embedding call to a provider took, failed calls included; provider is the LiteLLM "
    "model prefix (openai, local, ...; other for a prefix LiteLLM does not know).",
    ["provider"],
    buckets=CALL_BUCKETS,
)
ENQUEUE_LATENCY = Histogram(
    "embedding_pipeline_enqueue_seconds",
    "Seconds one enqueue call took (validation and the upsert), by source: api, cli, admin, other.",
    ["source"],
    buckets=CALL_BUCKETS,
)
SEARCH_SOURCES = ("api", "cli", "other")
SEARCH_LATENCY = Histogram(
    "embedding_pipeline_search_seconds",
    "Seconds one search took (embedding the query and the HNSW scan), by source: api, cli, other.",
    ["source"],
    buckets=CALL_BUCKETS,
)
HEALTH_CHECK_LATENCY = Histogram(
    "embedding_pipeline_health_check_seconds",
    "Seconds one health check took, by check (model, pgvector, queue, ready).",
    ["check"],
    buckets=CALL_BUCKETS,
)
STALE_VERSIONS = Counter(
    "embedding_pipeline_stale_versions",
    "Document versions refused because the stored version has a later source modified time, by collection.",
    ["collection"],
)
COST = Counter(
    "embedding_pipeline_cost_usd",
    "US dollars spent embedding documents, by collection, at LiteLLM's prices (local models: 0).",
    ["collection"],
)
# livemax: one series per runtime and precision some live process embeds the local model with.
LOCAL_ENCODER = Gauge(
    "embedding_pipeline_local_encoder_info",
    "1 for the runtime (openvino, torch) and precision (bf16, int8, f32) a live process embeds the local "
    "model with (pipeline.encoder); torch where the OpenVINO export failed the faithfulness gate.",
    ["runtime", "precision"],
    multiprocess_mode="livemax",
)


def observe_stage(stage: str, seconds: float, documents: int, collection: str, bulk: bool = False) -> None:
    """Each document of a batch experienced the whole batch stage: one observation per document,
    and the batch's wall time once in the stage's busy seconds."""
    child = LATENCY.labels(stage=str(stage), collection=collection, bulk=str(bulk).lower())
    for _ in range(documents):
        child.observe(seconds)
    if stage != "total":
        STAGE_BUSY.labels(stage=str(stage)).inc(seconds)


def observe_claim(seconds: float, waits: list[float]) -> None:
    CLAIM_LATENCY.observe(seconds)
    STAGE_BUSY.labels(stage="claim").inc(seconds)
    for wait in waits:
        QUEUE_WAIT.observe(wait)


def error_counts() -> dict[str, float]:
    """errors_total by error_type, all processes, largest first: the overview's and the optimizer's
    only figure without a database source (a failed try that a retry then saved leaves no row)."""
    counts: dict[str, float] = {}
    for family in process_registry().collect():
        if family.name == ERRORS._name:
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["error_type"]] = counts.get(sample.labels["error_type"], 0) + sample.value
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


SEARCH_FALLBACKS = Counter(
    "embedding_pipeline_search_fallbacks",
    "Hybrid searches answered from their keyword ranking alone because the query could not be embedded "
    "(reason: the error type, or circuit_open while the provider's circuit is open).",
    ["reason"],
)
RERANK_FALLBACKS = Counter(
    "embedding_pipeline_rerank_fallbacks",
    "Searches answered in their unreranked order because the collection's reranker failed (reason: the "
    "error type) or its circuit was open (circuit_open).",
    ["reason"],
)
