"""A draining worker stores one batch while it embeds the next (pipeline.pipeline.StorageStage),
keeping per-batch transactions, per-document failures and leases as when it stored inline."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import DatabaseError

from pipeline import signals
from pipeline.choices import DocumentStatus
from pipeline.models import Chunk, Document
from pipeline.pipeline import EmbeddingIngestionPipeline, RetryPolicy
from pipeline.queue import IncomingDocument, enqueue

pytestmark = pytest.mark.django_db(transaction=True)


def docs(n: int, prefix: str = "doc") -> list[IncomingDocument]:
    return [IncomingDocument(f"{prefix}-{i}", f"{prefix} number {i} is short") for i in range(n)]


@pytest.fixture
def on_store():
    """Connect a documents_embedded receiver (it runs inside the storage transaction)."""
    connected = []

    def connect(receiver):
        signals.documents_embedded.connect(receiver, weak=False)
        connected.append(receiver)

    yield connect
    for receiver in connected:
        signals.documents_embedded.disconnect(receiver)


def test_a_batch_is_stored_while_the_next_one_is_embedded_with_its_leases_kept(
    fake_collection, fake_provider, on_store
):
    enqueue(fake_collection, docs(4))
    seen: list[dict] = []

    def storing(document_ids, **kwargs):
        if seen:
            return
        # Storage of the first batch waits here, in its transaction, until the provider has been asked
        # for the second batch: only a worker embedding while it stores gets there.
        deadline = time.monotonic() + 20
        while len(fake_provider.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(1.5)  # longer than the 1 s lease: only renewals keep these documents
        seen.append(
            {
                "thread": threading.current_thread().name,
                "provider_calls": len(fake_provider.requests),
                "stolen": [d.external_id for d in Document.objects.claim("thief", 10, lease=timedelta(seconds=30))],
            }
        )

    on_store(storing)
    report = EmbeddingIngestionPipeline(worker_id="w", claim_batch=2, lease_seconds=1).drain()

    [first] = seen
    assert first["thread"].startswith("storage")
    assert first["provider_calls"] >= 2, "the next batch was not embedded while the first was being stored"
    assert first["stolen"] == [], "a batch waiting to be stored lost its leases"
    assert (report.claimed, report.embedded, report.failed) == (4, 4, 0)
    assert Document.objects.filter(status=DocumentStatus.EMBEDDED).count() == 4
    assert not Document.objects.exclude(lease_owner="").exists()


def test_a_poisoned_document_fails_alone_while_its_neighbours_batches_are_stored(fake_collection, fake_provider):
    batch = docs(6)
    batch[3] = IncomingDocument("doc-3", "doc number 3 POISON:400 here")
    enqueue(fake_collection, batch)

    report = EmbeddingIngestionPipeline(claim_batch=2).drain()

    assert (report.embedded, report.failed) == (5, 1)
    assert Document.objects.get(external_id="doc-3").status == DocumentStatus.FAILED
    assert not Chunk.objects.filter(document__external_id="doc-3").exists()
    assert Chunk.objects.filter(collection=fake_collection).count() == 5


def test_a_failed_storage_transaction_rolls_back_its_batch_only(fake_collection, on_store):
    enqueue(fake_collection, docs(6))

    def refuse(document_ids, **kwargs):
        if Document.objects.filter(pk__in=document_ids, external_id="doc-2").exists():
            raise DatabaseError("disk full")

    on_store(refuse)
    retry = RetryPolicy.from_settings(tries=1)
    report = EmbeddingIngestionPipeline(claim_batch=2, retry=retry).drain()

    failed = set(Document.objects.filter(status=DocumentStatus.FAILED).values_list("external_id", flat=True))
    assert report.failed == len(failed) == 2 and "doc-2" in failed
    assert report.embedded == 4
    # Nothing of the refused batch was written: its transaction rolled back as a whole.
    assert not Chunk.objects.filter(document__external_id__in=failed).exists()
    assert Chunk.objects.filter(collection=fake_collection).count() == 4


def test_run_once_alone_stores_before_it_returns(fake_collection):
    enqueue(fake_collection, docs(2))
    report = EmbeddingIngestionPipeline(claim_batch=2).run_once()
    assert report.embedded == 2
    assert Chunk.objects.filter(collection=fake_collection).count() == 2


def test_drain_stores_inline_when_overlap_is_off(fake_collection, on_store, settings):
    settings.EMBEDPORTAL_STORAGE_OVERLAP = False
    enqueue(fake_collection, docs(2))
    threads = []
    on_store(lambda document_ids, **kwargs: threads.append(threading.current_thread().name))
    assert EmbeddingIngestionPipeline(claim_batch=2).drain().embedded == 2
    assert threads == [threading.current_thread().name]
