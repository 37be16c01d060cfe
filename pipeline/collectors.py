"""Scrape-time gauges of the pipeline from the database (EMBEDPORTAL_METRICS_COLLECTORS): exact whichever
process or replica is scraped, whatever the backlog. What processes record into is pipeline.metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from embedportal import collectors
from pipeline import metrics
from pipeline.models import Document, WorkerHeartbeat
from pipeline.models.rules import is_reserved_name
from pipeline.recording import metric_label

QUEUE_DEPTH = "embedding_pipeline_queue_depth"
COLLECTION_QUEUE_DEPTH = "embedding_pipeline_collection_queue_depth"
OLDEST_PENDING = "embedding_pipeline_oldest_pending_age_seconds"
PROCESSING = "embedding_pipeline_processing_documents"
THROUGHPUT = "embedding_pipeline_throughput_docs_per_second"
PAUSED = "embedding_pipeline_collection_paused"
CLAIMABLE = "embedding_pipeline_claimable_depth"
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
SELECT (SELECT count(*) FROM pipeline_document WHERE status = 'processing'),
       (SELECT coalesce(sum(documents), 0) FROM pipeline_batchtiming WHERE finished_at > %(since)s),
       (SELECT max(beat_at) FROM pipeline_workerheartbeat)
"""


@dataclass
class QueueSnapshot:
    """What the database says about the queue now: the numbers behind the gauges and the overview page."""

    depth: int
    claimable: int
    per_collection: list[tuple[str, bool, int]]
    oldest_pending_seconds: float
    processing: int
    throughput: float
    workers_alive: int
    heartbeat_age_seconds: float | None


def queue_snapshot() -> QueueSnapshot:
    now = timezone.now()
    window = settings.EMBEDPORTAL_THROUGHPUT_WINDOW_SECONDS
    with collectors.bounded_queries() as cur:
        cur.execute(_QUEUE_SQL)
        per_collection = cur.fetchall()
        cur.execute(_SCALARS_SQL, {"since": now - timedelta(seconds=window)})
        processing, recent, last_beat = cur.fetchone()
        # Claimable work only, as the queue health check: paused collections wait on purpose (the paused
        # gauge says so) and an open circuit's backlog is the circuit's alert, not a stuck queue's.
        oldest = Document.objects.workable().oldest_due_at(now)
        claimable = Document.objects.claimable(now).count()
        alive = WorkerHeartbeat.objects.alive().count()
    return QueueSnapshot(
        depth=sum(depth for _, _, depth in per_collection),
        claimable=claimable,
        per_collection=per_collection,
        oldest_pending_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
        processing=processing,
        throughput=recent / window,
        workers_alive=alive,
        heartbeat_age_seconds=max(0.0, (now - last_beat).total_seconds()) if last_beat else None,
    )


class DatabaseCollector(collectors.DatabaseCollector):
    """Scrape-time gauges from the database: exact whichever process or replica is scraped."""

    subject = "pipeline"
    families = collectors.fresh(
        (QUEUE_DEPTH, "Documents waiting in the queue (status pending, backoff included).", []),
        (
            CLAIMABLE,
            "Documents a worker could claim now: pending and due, or leased with an expired lease, in unpaused "
            "collections whose provider circuit is closed (what the worker autoscaler scales on).",
            [],
        ),
        (COLLECTION_QUEUE_DEPTH, "Pending documents per collection.", ["collection"]),
        (
            OLDEST_PENDING,
            "Seconds the longest-waiting pending document past its backoff has waited, in unpaused collections "
            "whose provider circuit is closed (0 when none).",
            [],
        ),
        (PROCESSING, "Documents leased to a worker right now.", []),
        (THROUGHPUT, "Documents embedded per second over the last EMBEDPORTAL_THROUGHPUT_WINDOW_SECONDS.", []),
        (PAUSED, "1 if the collection is paused (its queue is not claimed).", ["collection"]),
        (
            WORKERS,
            "Worker processes whose heartbeat is fresh (EMBEDPORTAL_HEARTBEAT_MAX_AGE; a django-q2 process running "
            "the every-minute schedule: 150 s), as the queue health check counts them.",
            [],
        ),
        (HEARTBEAT_AGE, "Seconds since the most recent worker heartbeat (absent while none is on record).", []),
    )

    def fill(self, cur, depth, claimable, pending, oldest, processing, throughput, paused, workers, beat) -> None:
        snap = queue_snapshot()
        depth.add_metric([], snap.depth)
        claimable.add_metric([], snap.claimable)
        # Reserved (scratch) collections have no series: each operations-test run made new ones, which
        # filled Grafana's collection list and put them in per-collection alerts. Their documents still
        # count in the total depth, which the workers (and KEDA) must drain.
        users = [(name, p, n) for name, p, n in snap.per_collection if not is_reserved_name(name)]
        for name, is_paused, n in users:
            pending.add_metric([name], n)
            paused.add_metric([name], 1 if is_paused else 0)
        # Series a worker writes, at 0 from the next scrape on.
        metrics.declare({metric_label(name) for name, _, _ in users})
        oldest.add_metric([], snap.oldest_pending_seconds)
        processing.add_metric([], snap.processing)
        throughput.add_metric([], snap.throughput)
        workers.add_metric([], snap.workers_alive)
        if snap.heartbeat_age_seconds is not None:
            beat.add_metric([], snap.heartbeat_age_seconds)
