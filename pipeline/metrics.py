"""Prometheus metrics recorded by the pipeline.

Counters and histograms live here and work in multiprocess mode (PROMETHEUS_MULTIPROC_DIR
shared by web workers and django-q2's forked workers). Values derived from the database
(queue depth, oldest pending age, throughput) are computed at scrape time by the /metrics
view's collector instead, so they are exact whichever process is scraped.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from pipeline.choices import Stage

logger = logging.getLogger(__name__)

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
    "Documents that finished a pipeline attempt, by outcome (embedded, failed, superseded).",
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


# --- scrape time ----------------------------------------------------------------------------

# A scrape must not hang on a locked table; Prometheus gives up after its scrape timeout anyway.
QUERY_TIMEOUT_MS = 5000

QUEUE_DEPTH = "embedding_pipeline_queue_depth"
COLLECTION_QUEUE_DEPTH = "embedding_pipeline_collection_queue_depth"
OLDEST_PENDING = "embedding_pipeline_oldest_pending_age_seconds"
PROCESSING = "embedding_pipeline_processing_documents"
THROUGHPUT = "embedding_pipeline_throughput_docs_per_second"
PAUSED = "embedding_pipeline_collection_paused"
WORKERS = "embedding_pipeline_workers_alive"
HEARTBEAT_AGE = "embedding_pipeline_worker_heartbeat_age_seconds"

# One row per collection (tens, chosen by operators: a safe label). Each count is an
# index-only scan of pipeline_document_status (collection_id, status), so the total is
# exact at any backlog without a sequential scan; the partial indexes serve the rest.
_QUEUE_SQL = """
SELECT c.name, c.paused,
       (SELECT count(*) FROM pipeline_document d WHERE d.collection_id = c.id AND d.status = 'pending')
  FROM pipeline_collection c
 ORDER BY c.name
"""
_SCALARS_SQL = """
SELECT (SELECT min(available_at) FROM pipeline_document WHERE status = 'pending' AND available_at <= %(now)s),
       (SELECT count(*) FROM pipeline_document WHERE status = 'processing'),
       (SELECT count(*) FROM pipeline_document WHERE last_embedded_at > %(since)s),
       (SELECT count(*) FROM pipeline_workerheartbeat WHERE beat_at >= %(alive_since)s),
       (SELECT max(beat_at) FROM pipeline_workerheartbeat)
"""


def _db_families() -> dict[str, GaugeMetricFamily]:
    families = (
        GaugeMetricFamily(QUEUE_DEPTH, "Documents waiting in the queue (status pending, backoff included)."),
        GaugeMetricFamily(COLLECTION_QUEUE_DEPTH, "Pending documents per collection.", labels=["collection"]),
        GaugeMetricFamily(
            OLDEST_PENDING,
            "Seconds the longest-waiting pending document past its backoff has waited (paused collections "
            "included; 0 when none).",
        ),
        GaugeMetricFamily(PROCESSING, "Documents leased to a worker right now."),
        GaugeMetricFamily(
            THROUGHPUT, "Documents embedded per second over the last EMBEDPORTAL_THROUGHPUT_WINDOW_SECONDS."
        ),
        GaugeMetricFamily(PAUSED, "1 if the collection is paused (its queue is not claimed).", labels=["collection"]),
        GaugeMetricFamily(WORKERS, "Worker processes whose heartbeat is fresh (EMBEDPORTAL_HEARTBEAT_MAX_AGE)."),
        GaugeMetricFamily(HEARTBEAT_AGE, "Seconds since the most recent worker heartbeat (absent if none ever)."),
    )
    return {f.name: f for f in families}


@dataclass
class QueueSnapshot:
    """What the database says about the queue now: the numbers behind the gauges and the overview page."""

    depth: int
    per_collection: list[tuple[str, bool, int]]
    oldest_pending_seconds: float
    processing: int
    throughput: float
    workers_alive: int
    heartbeat_age_seconds: float | None


def queue_snapshot() -> QueueSnapshot:
    now = timezone.now()
    window = settings.EMBEDPORTAL_THROUGHPUT_WINDOW_SECONDS
    params = {
        "now": now,
        "since": now - timedelta(seconds=window),
        "alive_since": now - timedelta(seconds=settings.EMBEDPORTAL_HEARTBEAT_MAX_AGE),
    }
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT set_config('statement_timeout', %s, true)", [str(QUERY_TIMEOUT_MS)])
        cur.execute(_QUEUE_SQL)
        per_collection = [(name, paused, depth) for name, paused, depth in cur.fetchall()]
        cur.execute(_SCALARS_SQL, params)
        oldest, processing, recent, alive, last_beat = cur.fetchone()
    return QueueSnapshot(
        depth=sum(depth for _, _, depth in per_collection),
        per_collection=per_collection,
        oldest_pending_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        processing=processing,
        throughput=recent / window,
        workers_alive=alive,
        heartbeat_age_seconds=max(0.0, (now - last_beat).total_seconds()) if last_beat else None,
    )


class DatabaseCollector:
    """Scrape-time gauges from the database: exact whichever process or replica is scraped."""

    def describe(self) -> Iterator[Metric]:
        # Lets prometheus_client register the collector without querying the database.
        yield from _db_families().values()

    def collect(self) -> Iterator[Metric]:
        try:
            snap = queue_snapshot()
        except DatabaseError:
            # The scrape still serves the process metrics; absent() alerts cover a dead database.
            logger.exception("pipeline metrics: database query failed")
            return
        f = _db_families()
        f[QUEUE_DEPTH].add_metric([], snap.depth)
        for name, paused, depth in snap.per_collection:
            f[COLLECTION_QUEUE_DEPTH].add_metric([name], depth)
            f[PAUSED].add_metric([name], 1 if paused else 0)
        f[OLDEST_PENDING].add_metric([], snap.oldest_pending_seconds)
        f[PROCESSING].add_metric([], snap.processing)
        f[THROUGHPUT].add_metric([], snap.throughput)
        f[WORKERS].add_metric([], snap.workers_alive)
        if snap.heartbeat_age_seconds is not None:
            f[HEARTBEAT_AGE].add_metric([], snap.heartbeat_age_seconds)
        yield from (family for family in f.values() if family.samples)


class _ProcessCollector:
    """The default registry's collectors (single-process mode) as one collector."""

    def collect(self) -> Iterator[Metric]:
        return REGISTRY.collect()


def multiprocess_dir() -> str | None:
    """PROMETHEUS_MULTIPROC_DIR, read from the environment the way prometheus_client reads it."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def process_registry() -> CollectorRegistry:
    """Counters and histograms of every process: summed from the shared directory in
    multiprocess mode (gunicorn + django-q2 workers), else this process's own."""
    registry = CollectorRegistry()
    if path := multiprocess_dir():
        MultiProcessCollector(registry, path=path)
    else:
        registry.register(_ProcessCollector())
    return registry


def scrape_registry() -> CollectorRegistry:
    """A fresh registry per scrape: process metrics plus the database collectors in
    EMBEDPORTAL_METRICS_COLLECTORS. (django-prometheus's own view drops custom collectors
    in multiprocess mode, hence our own.)"""
    registry = process_registry()
    for path in settings.EMBEDPORTAL_METRICS_COLLECTORS:
        registry.register(import_string(path)())
    return registry


def exposition(accept: str | None = None) -> tuple[bytes, str]:
    """The scrape body and its content type, negotiated like prometheus_client's own servers
    (text format 0.0.4 unless the scraper asks for OpenMetrics)."""
    encoder, content_type = choose_encoder(accept)
    return encoder(scrape_registry()), content_type


# --- reading our own histograms back (admin overview) ---------------------------------------


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over cumulative (upper bound, count) buckets, +Inf last."""
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(upper):
                return lower  # like Prometheus: the highest finite bound
            in_bucket = cumulative - below
            return lower + (upper - lower) * ((rank - below) / in_bucket if in_bucket else 1.0)
        lower, below = upper, cumulative
    return lower


@dataclass
class StageLatency:
    stage: str
    count: int
    p50: float | None
    p95: float | None


def stage_latencies(registry: CollectorRegistry | None = None) -> list[StageLatency]:
    """p50/p95 per stage since the metrics directory was last wiped (all processes)."""
    buckets: dict[str, list[tuple[float, float]]] = {}
    for family in (registry or process_registry()).collect():
        if family.name != LATENCY._name:
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                buckets.setdefault(sample.labels["stage"], []).append((float(sample.labels["le"]), sample.value))
    stages = [*Stage.values, "total"]
    out = []
    for stage in sorted(buckets, key=lambda s: stages.index(s) if s in stages else len(stages)):
        rows = sorted(buckets[stage])
        out.append(StageLatency(stage, int(rows[-1][1]), histogram_quantile(0.5, rows), histogram_quantile(0.95, rows)))
    return out


def error_counts(registry: CollectorRegistry | None = None) -> dict[str, float]:
    """errors_total by error_type, all processes, largest first."""
    counts: dict[str, float] = {}
    for family in (registry or process_registry()).collect():
        if family.name == ERRORS._name:
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["error_type"]] = counts.get(sample.labels["error_type"], 0) + sample.value
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))
