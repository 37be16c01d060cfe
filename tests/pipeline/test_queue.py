from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from pipeline.choices import DocumentStatus
from pipeline.models import Chunk, Document
from pipeline.pipeline import EmbeddingIngestionPipeline, Report
from pipeline.queue import IncomingDocument, enqueue
from tests.conftest import wait_for
from tests.tools import concurrently, in_thread, lock_waiters


@pytest.mark.django_db
def test_reenqueue_unchanged_document_is_not_reembedded(hash_collection):
    enqueue(hash_collection, [IncomingDocument("a", "alpha text " * 30)])
    EmbeddingIngestionPipeline().drain()
    doc = Document.objects.get(external_id="a")
    chunk_ids = set(Chunk.objects.filter(document=doc).values_list("id", flat=True))

    result = enqueue(hash_collection, [IncomingDocument("a", "alpha text " * 30, metadata={"v": 2})])

    assert result.unchanged == ["a"] and not result.created and not result.updated
    assert EmbeddingIngestionPipeline().drain().claimed == 0
    doc.refresh_from_db()
    assert doc.status == DocumentStatus.EMBEDDED
    assert doc.metadata == {"v": 2}
    assert set(Chunk.objects.filter(document=doc).values_list("id", flat=True)) == chunk_ids


@pytest.mark.django_db
def test_changed_document_goes_back_to_queue_and_is_reembedded(hash_collection):
    enqueue(hash_collection, [IncomingDocument("a", "first version " * 30)])
    EmbeddingIngestionPipeline().drain()

    result = enqueue(hash_collection, [IncomingDocument("a", "second version " * 30)])

    assert result.updated == ["a"]
    assert Document.objects.get(external_id="a").status == DocumentStatus.PENDING
    assert EmbeddingIngestionPipeline().drain().embedded == 1
    texts = Chunk.objects.filter(document__external_id="a").values_list("text", flat=True)
    assert texts and all("second version" in t for t in texts)


@pytest.mark.django_db
def test_change_while_processing_refuses_the_stale_result(hash_collection):
    enqueue(hash_collection, [IncomingDocument("a", "old text " * 30)])
    worker = EmbeddingIngestionPipeline()
    claimed = Document.objects.claim(worker.worker_id, 10, worker.lease)
    assert [d.external_id for d in claimed] == ["a"]

    enqueue(hash_collection, [IncomingDocument("a", "new text " * 30)])  # producer updates mid-flight
    # Pending again and held by no one, as every requeue leaves a document (the admin showed its old owner).
    pending = Document.objects.get(external_id="a")
    assert (pending.status, pending.lease_owner, pending.lease_expires_at) == (DocumentStatus.PENDING, "", None)
    report = Report()
    worker._process(hash_collection, claimed, report)

    assert report.embedded == 0
    doc = Document.objects.get(external_id="a")
    assert doc.status == DocumentStatus.PENDING and not Chunk.objects.filter(document=doc).exists()
    assert EmbeddingIngestionPipeline().drain().embedded == 1
    assert all("new text" in t for t in Chunk.objects.filter(document=doc).values_list("text", flat=True))


@pytest.mark.django_db(transaction=True)
def test_concurrent_producers_enqueue_each_id_once(hash_collection):
    ids = [f"doc-{i}" for i in range(200)]

    def produce(n: int) -> None:
        # Each producer sends the ids in a different order, half with changed text.
        order = ids[n::1] + ids[:n] if n % 2 else list(reversed(ids))
        for start in range(0, len(order), 50):
            enqueue(hash_collection, [IncomingDocument(i, f"text of {i} v{n % 2}") for i in order[start : start + 50]])

    assert concurrently(produce, 4) == [None] * 4
    assert Document.objects.filter(collection=hash_collection).count() == 200
    assert set(Document.objects.values_list("external_id", flat=True)) == set(ids)
    assert set(Document.objects.values_list("status", flat=True)) == {DocumentStatus.PENDING}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("change", ["store", "release", "delete"])
def test_a_worker_and_a_producer_sharing_two_documents_take_turns_without_a_deadlock(hash_collection, change):
    # A producer's upsert locks its documents by id, "a" then "b"; the worker's statements locked theirs
    # in row order, "b" (enqueued first) then "a". A producer holding "a" and a worker holding "b" then
    # waited for each other, and PostgreSQL failed one: a 409 for the producer or a failed batch.
    enqueue(hash_collection, [IncomingDocument("b", "bee " * 30)])
    enqueue(hash_collection, [IncomingDocument("a", "ay " * 30)])
    worker = EmbeddingIngestionPipeline()
    claimed = Document.objects.claim(worker.worker_id, 10, worker.lease)
    assert [d.external_id for d in claimed] == ["b", "a"]
    versions = [(d.pk, d.content_hash) for d in claimed]
    work = {
        "store": lambda: Document.objects.mark_embedded(worker.worker_id, versions, timezone.now()),
        "release": lambda: Document.objects.release(worker.worker_id),
        "delete": lambda: Document.objects.filter(pk__in=[pk for pk, _ in versions]).remove(),
    }[change]
    with transaction.atomic():
        enqueue(hash_collection, [IncomingDocument("a", "ay again " * 30)])  # the upsert has locked "a"
        thread, outcome = in_thread(work)
        wait_for(lock_waiters)  # the worker's statement waits for "a"
        enqueue(hash_collection, [IncomingDocument("b", "bee again " * 30)])  # ... and the upsert goes on
    thread.join(30)
    # After the producer: the new versions are not the worker's to store or release; a delete takes both.
    assert outcome == {"result": {"store": set(), "release": 0, "delete": 2}[change]}
    expected = {} if change == "delete" else {"a": DocumentStatus.PENDING, "b": DocumentStatus.PENDING}
    assert dict(Document.objects.values_list("external_id", "status")) == expected


@pytest.mark.django_db(transaction=True)
def test_a_document_deleted_while_its_worker_stores_it_leaves_no_chunk_behind(hash_collection):
    enqueue(hash_collection, [IncomingDocument("a", "text " * 30), IncomingDocument("b", "other " * 30)])
    worker = EmbeddingIngestionPipeline()
    claimed = Document.objects.claim(worker.worker_id, 10, worker.lease)
    outcome: list[object] = []

    def delete() -> None:
        try:
            outcome.append(Document.objects.filter(external_id="a").remove())
        except BaseException as exc:  # noqa: BLE001 -- surfaced by the assertion below
            outcome.append(exc)
        finally:
            connection.close()

    # The worker's store holds the document's row (mark_embedded) with its chunks written, not yet
    # committed, when the delete comes: the delete waits, then takes the chunks with the document.
    # Django's own cascade deleted the chunks it saw before waiting, and failed on the foreign key.
    deleter = threading.Thread(target=delete)
    with transaction.atomic():
        worker._process(hash_collection, claimed, Report())
        deleter.start()
        deleter.join(timeout=1)
        assert deleter.is_alive(), "the delete waits for the store's transaction"
    deleter.join()
    assert outcome == [1]
    assert list(Document.objects.values_list("external_id", flat=True)) == ["b"]
    assert set(Chunk.objects.values_list("document__external_id", flat=True)) == {"b"}
    assert not Chunk.objects.exclude(document__in=Document.objects.all()).exists()

    # Deleted first: the worker's compare-and-swap finds it gone and stores nothing.
    enqueue(hash_collection, [IncomingDocument("c", "third " * 30)])
    claimed = Document.objects.claim(worker.worker_id, 10, worker.lease)
    Document.objects.filter(external_id="c").remove()
    report = Report()
    worker._process(hash_collection, claimed, report)
    assert report.embedded == 0 and not Chunk.objects.filter(document__external_id="c").exists()


@pytest.mark.django_db
def test_a_claim_takes_a_bounded_amount_of_text(hash_collection, monkeypatch):
    """32 documents of a million characters took longer to chunk than the task timeout, whose kill
    returned them for the next claim to take again, for ever (an adversarial-input soak)."""
    from pipeline.models import document

    monkeypatch.setattr(document, "CLAIM_TEXT_BYTES", 100)
    enqueue(hash_collection, [IncomingDocument(f"big{i}", "x" * 150) for i in range(3)])
    enqueue(hash_collection, [IncomingDocument(f"small{i}", "y" * 30) for i in range(5)])
    lease = EmbeddingIngestionPipeline().lease
    assert [d.external_id for d in Document.objects.claim("w1", 32, lease)] == ["big0"], "one alone, however big"
    Document.objects.filter(external_id__startswith="big").update(status=DocumentStatus.EMBEDDED)
    assert [d.external_id for d in Document.objects.claim("w2", 32, lease)] == ["small0", "small1", "small2"]
    assert [d.external_id for d in Document.objects.claim("w3", 32, lease)] == ["small3", "small4"]


@pytest.mark.django_db(transaction=True)
def test_renewing_leases_skips_the_rows_the_workers_own_store_holds(hash_collection):
    """A worker storing a large batch holds its rows: every renewal waited out its 2 s lock timeout and
    logged an error (an adversarial-input soak), though a claim skips a locked row anyway."""
    enqueue(hash_collection, [IncomingDocument(i, f"text {i}") for i in ("a", "b")])
    lease = EmbeddingIngestionPipeline().lease
    claimed = Document.objects.claim("w", 10, lease)
    held, other = claimed
    locked, release = threading.Event(), threading.Event()

    def store_holding_a_row() -> None:
        with transaction.atomic():
            Document.objects.select_for_update().filter(pk=held.pk).exists()
            locked.set()
            release.wait(30)

    thread, outcome = in_thread(store_holding_a_row)
    assert locked.wait(10)
    try:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SET LOCAL lock_timeout = '2s'")
            assert Document.objects.filter(pk__in=[held.pk, other.pk]).renew("w", lease * 10) == 1
    finally:
        release.set()
        thread.join()
    assert "error" not in outcome
    expiries = dict(Document.objects.values_list("external_id", "lease_expires_at"))
    assert expiries[other.external_id] > expiries[held.external_id], "the free row renewed, the held one left"


@pytest.mark.django_db
def test_a_version_whose_workers_keep_dying_is_failed_not_claimed_for_ever(hash_collection):
    """A document that kills its worker (out of memory, past the task timeout) was claimed again each time
    its lease ran out, for ever, taking down each worker in turn (an adversarial-input soak's livelock)."""
    from pipeline.batches import MAX_LOST_LEASES
    from reprocessing.models import FailedDocument

    enqueue(hash_collection, [IncomingDocument("killer", "takes its worker down " * 5), IncomingDocument("ok", "fine")])
    for dead in range(MAX_LOST_LEASES):  # each worker dies holding the lease
        claimed = Document.objects.claim(f"dead-{dead}", 10, timedelta(seconds=30))
        assert claimed, dead
        Document.objects.filter(pk__in=[d.pk for d in claimed]).update(lease_expires_at=timezone.now() - timedelta(1))
    # The first claim took them pending; each later one took a lease that ran out, as the drain's does.
    assert dict(Document.objects.values_list("external_id", "lost_leases")) == {"killer": 2, "ok": 2}
    report = EmbeddingIngestionPipeline().drain()
    assert (report.embedded, report.failed) == (0, 2)
    failure = FailedDocument.objects.get(document__external_id="killer")
    assert failure.error_type == "unknown" and "its worker stopped 3 times while processing it" in failure.message
    # Reprocessing's retry, or a new version, starts the count again.
    Document.objects.filter(external_id="killer").requeue()
    enqueue(hash_collection, [IncomingDocument("ok", "a new version")])
    assert dict(Document.objects.values_list("external_id", "lost_leases")) == {"killer": 0, "ok": 0}
    assert EmbeddingIngestionPipeline().drain().embedded == 2
