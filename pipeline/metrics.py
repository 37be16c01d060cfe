"""Prometheus metrics recorded by the pipeline.

Counters and histograms live here and work in multiprocess mode (PROMETHEUS_MULTIPROC_DIR
shared by web workers and django-q2's forked workers). Values derived from the database
(queue depth, oldest pending age, throughput) are computed at scrape time by the /metrics
view's collector instead, so they are exact whichever process is scraped.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# Per-stage seconds; 30 s is a bucket because the latency SLO is "p95 per document < 30 s".
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# Embedded time minus source modified time; 3600 s is a bucket for the 1 h freshness SLO.
FRESHNESS_BUCKETS = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600, 86400, 604800)

LATENCY = Histogram(
    "embedding_pipeline_latency_seconds",
    "Seconds spent per document in each pipeline stage (chunking, embedding, storage) and in total.",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
ERRORS = Counter(
    "embedding_pipeline_errors",
    "Pipeline errors by type (each failed attempt counts, retries included).",
    ["error_type"],
)
DOCUMENTS = Counter(
    "embedding_pipeline_documents_processed",
    "Documents that finished a pipeline attempt, by outcome (embedded, failed, retried, superseded).",
    ["outcome"],
)
CHUNKS = Counter("embedding_pipeline_chunks_embedded", "Chunks embedded and stored.")
FRESHNESS_LAG = Histogram(
    "embedding_pipeline_freshness_lag_seconds",
    "Seconds from a document's source modification to its embedding being stored.",
    buckets=FRESHNESS_BUCKETS,
)


def observe_stage(stage: str, seconds: float, documents: int) -> None:
    """Each document of a batch experienced the whole batch stage: one observation per document."""
    child = LATENCY.labels(stage=str(stage))
    for _ in range(documents):
        child.observe(seconds)
