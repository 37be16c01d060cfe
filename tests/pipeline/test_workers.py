"""Claims under concurrency and worker death, with real processes where it matters."""

from __future__ import annotations

import collections
import os
import signal
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection

from pipeline.choices import DocumentStatus
from pipeline.models import Chunk, Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from tests.conftest import manage, wait_for

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
