"""The pipeline's signals (sent inside the transaction changing the documents: receivers commit with
it) and its own receivers: each collection's partial HNSW index."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal, receiver

from pipeline import backfill, storage
from pipeline.choices import DocumentStatus
from pipeline.models import Collection, Document, WorkerHeartbeat
from pipeline.wakeup import kick_workers

# A worker failed a document for good: document_id, error (embedding.PipelineError), message
# (already scrubbed of secrets). Sent once per document, after Document.status became failed.
document_failed = Signal()
# A worker stored documents' embeddings: document_ids (the ids it stored), embedded_at.
documents_embedded = Signal()
# A worker process (qcluster, run_pipeline) is starting: a rollout that changed settings notices it here.
worker_starting = Signal()


@receiver(worker_starting)
def forget_dead_workers(**kwargs: Any) -> None:
    """Forget this host's killed processes and wake the workers for work nothing will announce: a killed
    worker's leases (its cluster's drain tasks stay taken until Q_RETRY), or documents a stopped cluster
    left pending. Without the wake a restarted cluster idled until the minute's drain schedule, which its
    scheduler first runs 30 s after the start: a kill's documents waited up to a minute more than the lease.
    The drain this starts takes expired leases, waits for one about to run out, or sets a wake at the
    dead worker's lease expiry (pipeline.tasks.wake_when_due)."""
    WorkerHeartbeat.objects.forget_the_dead_here()
    if Document.objects.filter(status__in=(DocumentStatus.PENDING, DocumentStatus.PROCESSING)).exists():
        kick_workers()


@receiver(post_save, sender=Collection)
def create_index(sender: type[Collection], instance: Collection, created: bool, **kwargs: Any) -> None:
    if kwargs.get("raw"):
        return
    if created:
        storage.create_collection_index(instance)
        return
    built = storage.index_options(instance.index_name)
    if built is not None and built != {"m": instance.hnsw_m, "ef_construction": instance.hnsw_ef_construction}:
        # New HNSW parameters: wake a worker, which rebuilds the index when idle (backfill.rebuild_stale).
        transaction.on_commit(kick_workers)


@receiver(documents_embedded)
def finish_backfills(sender: type, document_ids: list[int], **kwargs: Any) -> None:
    backfill.finish_building(document_ids)


@receiver(post_delete, sender=Collection)
def drop_index(sender: type[Collection], instance: Collection, **kwargs: Any) -> None:
    storage.drop_collection_index(instance)
