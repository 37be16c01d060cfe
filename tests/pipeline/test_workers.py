"""Claims under concurrency and worker death, with real processes where it matters."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from pipeline.choices import DocumentStatus
from pipeline.models import Chunk, Collection, Document, WorkerHeartbeat
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from tests.conftest import database_url, manage, wait_for
from tests.tools import in_thread, run_snippet

pytestmark = pytest.mark.django_db(transaction=True)


def test_two_concurrent_workers_never_claim_the_same_document(hash_collection):
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"text {i}") for i in range(300)])
    claimed: dict[str, list[int]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def work(name: str) -> None:
        try:
            barrier.wait()
            while docs := Document.objects.claim(name, 7, timedelta(minutes=5)):
                claimed[name].extend(d.pk for d in docs)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not set(claimed["a"]) & set(claimed["b"])
    assert len(claimed["a"]) + len(claimed["b"]) == 300
    assert claimed["a"] and claimed["b"], "both workers got work"
    owners = collections.Counter(Document.objects.values_list("lease_owner", flat=True))
    assert owners == {"a": len(claimed["a"]), "b": len(claimed["b"])}


def test_two_worker_processes_embed_each_chunk_exactly_once(fake_collection, fake_provider):
    fake_provider.delay = 0.05  # keep both processes busy at the same time
    enqueue(fake_collection, [IncomingDocument(f"d{i}", f"document number {i}") for i in range(60)])
    env = {"FAKE_PROVIDER_KEY": "sk-test-secret-123456", "EMBEDPORTAL_CLAIM_BATCH": "4"}
    workers = [manage("run_pipeline", "--once", env=env) for _ in range(2)]
    assert [w.wait(timeout=120) for w in workers] == [0, 0]

    sent = collections.Counter(text for r in fake_provider.requests for text in r["inputs"])
    assert len(sent) == 60 and set(sent.values()) == {1}
    assert Document.objects.filter(status=DocumentStatus.EMBEDDED).count() == 60
    assert Chunk.objects.filter(collection=fake_collection).count() == 60
    assert Document.objects.filter(attempts=1).count() == 60


def test_killed_worker_lease_returns_document_to_queue(fake_collection, fake_provider):
    fake_provider.delay = 60  # the worker will hang in the embedding call until killed
    enqueue(fake_collection, [IncomingDocument(f"d{i}", f"document number {i} " * 20) for i in range(6)])
    env = {"FAKE_PROVIDER_KEY": "sk-test-secret-123456", "EMBEDPORTAL_CLAIM_BATCH": "6"}
    worker = manage("run_pipeline", "--lease-seconds", "10", env=env)
    try:
        wait_for(lambda: len(fake_provider.requests) >= 1)
        owners = set(Document.objects.values_list("lease_owner", flat=True))
        assert Document.objects.filter(status=DocumentStatus.PROCESSING).count() == 6
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()

    # The dead worker's documents are still leased to it until the lease expires ...
    fake_provider.delay = 0
    assert EmbeddingIngestionPipeline().drain().claimed == 0
    assert not Chunk.objects.exists()
    wait_for(lambda: Document.objects.claimable().count() == 6, timeout=15)

    # ... then another worker takes them over and nothing is lost or doubled.
    report = EmbeddingIngestionPipeline().drain()
    assert report.embedded == 6
    assert Document.objects.filter(status=DocumentStatus.EMBEDDED, attempts=2).count() == 6
    assert set(Document.objects.values_list("lease_owner", flat=True)) == {""}
    assert owners and "" not in owners
    per_doc = collections.Counter(Chunk.objects.values_list("document_id", flat=True))
    expected = {d.pk: len(d.chunks.all()) for d in Document.objects.all()}
    assert per_doc == expected and all(n >= 1 for n in per_doc.values())
    ordinals = list(Chunk.objects.values_list("document_id", "ordinal"))
    assert len(ordinals) == len(set(ordinals))


def test_a_batch_outliving_its_lease_keeps_it_while_its_worker_is_alive(fake_collection, fake_provider):
    fake_provider.delay = 4  # each embedding call outlasts the 2-second lease
    enqueue(fake_collection, [IncomingDocument(f"d{i}", f"document number {i}") for i in range(3)])
    env = {"FAKE_PROVIDER_KEY": "sk-test-secret-123456"}
    worker = manage("run_pipeline", "--once", "--lease-seconds", "2", env=env)
    try:
        wait_for(lambda: len(fake_provider.requests) >= 1)
        time.sleep(3)  # past the original lease: only renewal keeps the documents leased
        assert Document.objects.claimable().count() == 0
        assert EmbeddingIngestionPipeline().drain().claimed == 0
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()

    assert Document.objects.filter(status=DocumentStatus.EMBEDDED, attempts=1).count() == 3
    sent = collections.Counter(text for r in fake_provider.requests for text in r["inputs"])
    assert set(sent.values()) == {1}


def test_continuous_worker_idles_on_an_empty_queue_and_embeds_what_arrives_later(hash_collection):
    worker = manage("run_pipeline", env={"EMBEDPORTAL_IDLE_SLEEP": "0.2"})
    embedded = Document.objects.filter(status=DocumentStatus.EMBEDDED)
    try:
        # Its heartbeat comes just before its first claim, which finds the queue empty.
        wait_for(lambda: WorkerHeartbeat.objects.filter(worker__endswith=f":{worker.pid}").exists())
        time.sleep(1)  # several empty polls
        assert worker.poll() is None, "the worker stopped on an empty queue"

        enqueue(hash_collection, [IncomingDocument(f"first-{i}", f"first batch, text {i}") for i in range(5)])
        wait_for(lambda: embedded.filter(external_id__startswith="first-").count() == 5)
        time.sleep(1)  # idle again between the two batches
        assert worker.poll() is None, "the worker stopped after its first batch"
        assert not embedded.filter(external_id__startswith="second-").exists()

        enqueue(hash_collection, [IncomingDocument(f"second-{i}", f"second batch, text {i}") for i in range(5)])
        wait_for(lambda: embedded.filter(external_id__startswith="second-").count() == 5)
        assert worker.poll() is None

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    # A clean stop removes the worker's heartbeat: it does not count as alive once gone.
    assert not WorkerHeartbeat.objects.filter(worker__endswith=f":{worker.pid}").exists()
    docs = list(Document.objects.all())
    assert len(docs) == 10
    assert {(d.status, d.attempts, d.lease_owner, d.lease_expires_at) for d in docs} == {
        (DocumentStatus.EMBEDDED, 1, "", None)
    }
    assert all(d.last_embedded_at is not None for d in docs)
    per_doc = collections.Counter(Chunk.objects.values_list("document_id", flat=True))
    assert per_doc == {d.pk: 1 for d in docs}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_mid_batch_leaves_no_document_leased_and_exits_0(fake_collection, fake_provider, sig):
    fake_provider.delay = 3  # the batch in hand is still being embedded when the signal lands
    enqueue(fake_collection, [IncomingDocument(f"d{i}", f"document number {i}") for i in range(8)])
    env = {"FAKE_PROVIDER_KEY": "sk-test-secret-123456", "EMBEDPORTAL_CLAIM_BATCH": "4"}
    worker = manage("run_pipeline", env=env)
    try:
        wait_for(lambda: len(fake_provider.requests) >= 1)
        in_hand = dict(Document.objects.filter(status=DocumentStatus.PROCESSING).values_list("pk", "lease_owner"))
        assert len(in_hand) == 4
        (owner,) = set(in_hand.values())
        assert owner
        worker.send_signal(sig)
        assert worker.wait(timeout=20) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    assert not Document.objects.filter(status=DocumentStatus.PROCESSING).exists()
    assert not Document.objects.filter(lease_owner=owner).exists()
    chunks = collections.Counter(Chunk.objects.values_list("document_id", flat=True))
    for doc in Document.objects.all():
        assert (doc.lease_owner, doc.lease_expires_at) == ("", None), doc.external_id
        if doc.pk in in_hand:
            # The batch in hand is either finished or given back to the queue untouched.
            assert doc.status in {DocumentStatus.EMBEDDED, DocumentStatus.PENDING}, doc.external_id
            assert chunks[doc.pk] == (1 if doc.status == DocumentStatus.EMBEDDED else 0), doc.external_id
        else:
            # Nothing is claimed after the signal.
            assert (doc.status, doc.attempts, chunks[doc.pk]) == (DocumentStatus.PENDING, 0, 0), doc.external_id
    ordinals = list(Chunk.objects.values_list("document_id", "ordinal"))
    assert len(ordinals) == len(set(ordinals))


def test_a_stopping_worker_gives_back_its_own_leases_only(hash_collection):
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"text {i}") for i in range(6)])
    pipeline = EmbeddingIngestionPipeline()
    # Documents still leased to the worker when it stops (a batch cut short), and another worker's.
    mine = {d.pk for d in Document.objects.claim(pipeline.worker_id, 3, timedelta(minutes=5))}
    theirs = {d.pk for d in Document.objects.claim("another-worker", 3, timedelta(minutes=5))}
    stop = threading.Event()
    stop.set()

    assert pipeline.run_forever(stop).claimed == 0

    for doc in Document.objects.all():
        if doc.pk in mine:
            assert (doc.status, doc.lease_owner, doc.lease_expires_at) == (DocumentStatus.PENDING, "", None)
        else:
            assert doc.pk in theirs
            assert (doc.status, doc.lease_owner) == (DocumentStatus.PROCESSING, "another-worker")
            assert doc.lease_expires_at is not None
    assert Document.objects.claimable().count() == 3
    assert not Chunk.objects.exists()


# run_pipeline's own handle() and signal handlers, with run_forever replaced by the idle loop's
# pattern minus its sleep, so that a signal often lands inside stop.wait(): it must still stop.
SIGNAL_DURING_WAIT = """
import os, random, signal, threading
import django
django.setup()
from django.core.management import call_command
from pipeline.pipeline import EmbeddingIngestionPipeline, Report

def spin(self, stop):
    threading.Timer(random.uniform(0.001, 0.02), os.kill, (os.getpid(), signal.SIGTERM)).start()
    while not stop.is_set():
        stop.wait(0)
    return Report()

EmbeddingIngestionPipeline.run_forever = spin
for _ in range(30):
    call_command("run_pipeline")
print("all stopped")
"""


def test_a_stop_signal_landing_inside_the_idle_wait_still_stops_the_worker():
    env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "embedportal.settings"}
    child = run_snippet(SIGNAL_DURING_WAIT, env, 30, "a SIGTERM during stop.wait() deadlocked the worker")
    assert child.returncode == 0, child.stderr
    assert child.stdout.count("started; Ctrl-C to stop.") == 30
    assert "all stopped" in child.stdout


def test_qcluster_stops_mid_drain_within_seconds_and_leaves_the_rest_queued(fake_collection, fake_provider):
    # Drain tasks run for up to DRAIN_SECONDS (50 s) and django-q2 lets each running and prefetched
    # task finish before it stops: without the stop flag a pod's stop took minutes.
    fake_provider.delay = 2
    enqueue(fake_collection, [IncomingDocument(f"d{i}", f"document number {i}") for i in range(60)])
    env = {"FAKE_PROVIDER_KEY": "sk-test-secret-123456", "EMBEDPORTAL_CLAIM_BATCH": "2", "Q_WORKERS": "2"}
    cluster = manage("qcluster", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: Document.objects.filter(status=DocumentStatus.EMBEDDED).count() >= 2, timeout=60)
        cluster.send_signal(signal.SIGTERM)  # SIGINT (Ctrl-C under make run) takes the same path
        started = time.monotonic()
        cluster.wait(timeout=60)
        stopped_in = time.monotonic() - started
    finally:
        if cluster.poll() is None:
            cluster.kill()
            cluster.wait()
    print(f"stopped in {stopped_in:.1f} s")
    # Each worker ends the batch in hand (2 s at the provider) and claims nothing more; the pod's grace
    # period (deploy/base/app/worker-deployment.yaml) is far longer.
    assert stopped_in < 20, f"qcluster took {stopped_in:.1f} s to stop"
    assert cluster.returncode == 0
    assert not Document.objects.filter(status=DocumentStatus.PROCESSING).exists()
    assert Document.objects.filter(status=DocumentStatus.PENDING, lease_owner="").count() >= 40


def test_a_cleanly_stopped_qcluster_removes_its_processes_heartbeats(hash_collection):
    """run_pipeline deletes its row when it stops; a cluster's processes did not: after a clean stop (a
    deploy, a scale-down) the queue health check and embedding_pipeline_workers_alive counted its
    processes alive for up to 150 s (the schedule rows' age), holding back EmbeddingPipelineNoWorkers."""
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"document number {i}") for i in range(4)])
    cluster = manage("qcluster", env={"Q_WORKERS": "2"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: Document.objects.filter(status=DocumentStatus.EMBEDDED).count() == 4, timeout=60)
        assert WorkerHeartbeat.objects.exists()
        cluster.send_signal(signal.SIGTERM)
        cluster.wait(timeout=60)
    finally:
        if cluster.poll() is None:
            cluster.kill()
            cluster.wait()
    assert cluster.returncode == 0
    assert list(WorkerHeartbeat.objects.values_list("worker", "role")) == []


def delete_while(collection: Collection, work) -> object:
    """Delete the collection while `work` runs in a worker's thread, started once the delete holds the
    collection's row (its first step); what `work` returned, which must not have raised."""
    with transaction.atomic():
        assert Collection.objects.select_for_update().filter(pk=collection.pk).exists()
        worker, outcome = in_thread(work)
        worker.join(timeout=3)  # work blocked on the collection's row is still running here
        collection.delete()
    worker.join(timeout=30)
    assert not worker.is_alive() and "error" not in outcome, outcome
    return outcome["result"]


def test_deleting_a_collection_while_a_worker_claims_from_it_deadlocks_neither(hash_collection):
    """The delete locks the collection, then its documents; a claim locked documents, then updated the
    collection's last_claimed_at: the opposite order. The operations tests delete their scratch
    collections every hour while workers claim from them, and PostgreSQL aborted one side with a
    deadlock: a drain task failed, or a worker logged a database outage and backed off."""
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"text {i}") for i in range(5)])
    claimed = delete_while(hash_collection, lambda: Document.objects.claim("w:1:a", 5, timedelta(minutes=5)))
    assert claimed == []
    assert not Document.objects.exists() and not Collection.objects.filter(pk=hash_collection.pk).exists()


def test_deleting_a_collection_while_a_worker_stores_into_it_deadlocks_neither(hash_collection):
    """A store locks its documents, and its chunks' foreign keys take the collection's row at commit; the
    delete holds that row and waits for the documents: the store's commit deadlocked with the delete."""
    import numpy as np

    from pipeline import storage
    from pipeline.chunking import chunker_for

    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"text {i}") for i in range(3)])
    docs = Document.objects.claim("w:1:a", 3, timedelta(minutes=5))
    chunked = chunker_for(hash_collection).chunk_many([d.text for d in docs], [d.external_id for d in docs])
    results = [
        (d, c, np.ones((len(c), hash_collection.dimensions), np.float32)) for d, c in zip(docs, chunked, strict=True)
    ]
    assert delete_while(hash_collection, lambda: storage.store("w:1:a", results, timezone.now())) == []
    assert not Chunk.objects.exists() and not Document.objects.exists()
