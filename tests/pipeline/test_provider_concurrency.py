"""A worker makes up to `provider_concurrency` embedding calls at once for one batch with a
remote provider: real HTTP to a local fake OpenAI-compatible server through LiteLLM, which
counts the requests it is answering at the same moment."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from pipeline.batches import concurrency
from pipeline.choices import DocumentStatus
from pipeline.collections import create_collection
from pipeline.models import BatchTiming, Chunk, Collection, Document, ProviderCircuit
from pipeline.pipeline import EmbeddingIngestionPipeline, RetryPolicy
from pipeline.providers import hash_vectors
from pipeline.queue import IncomingDocument, enqueue

pytestmark = pytest.mark.django_db

# Eight 200-character paragraphs: eight chunks of the fake collection, two per call (batch_size 2).
TEXT = "\n\n".join(f"Paragraph {i}: " + "operators watch the queue " * 7 for i in range(8))


def remote(fake_collection, n: int, batch_size: int = 2) -> Collection:
    Collection.objects.filter(pk=fake_collection.pk).update(provider_concurrency=n, batch_size=batch_size)
    fake_collection.refresh_from_db()
    return fake_collection


def run(claim_batch: int = 20):
    return EmbeddingIngestionPipeline(claim_batch=claim_batch, retry=RetryPolicy.from_settings(sleep=lambda s: None))


@pytest.mark.parametrize("n", [1, 4])
def test_a_batchs_calls_overlap_up_to_the_collections_concurrency_and_vectors_keep_their_chunks(
    fake_collection, fake_provider, n
):
    collection = remote(fake_collection, n)
    fake_provider.delay = 0.3  # long enough for every call of the batch to be in flight together
    enqueue(collection, [IncomingDocument("doc", TEXT)])

    report = run().run_once()

    assert report.embedded == 1
    chunks = list(Chunk.objects.filter(document__external_id="doc").order_by("ordinal"))
    assert len(chunks) == 8 and len(fake_provider.requests) == 4
    assert fake_provider.max_in_flight == n
    # Calls answered in any order: every chunk still holds its own text's vector.
    for chunk in chunks:
        assert np.allclose(np.asarray(chunk.embedding, dtype=np.float32), hash_vectors([chunk.text], 8)[0], atol=1e-6)
    # Every call's usage is metered, from whichever thread made it (the fake bills 1 token per input).
    assert BatchTiming.objects.get(collection=collection).tokens == 8


def test_a_bad_document_still_fails_alone_when_its_batchs_calls_run_concurrently(fake_collection, fake_provider):
    collection = remote(fake_collection, 4, batch_size=1)
    docs = [IncomingDocument(f"ok{i}", f"fine text number {i}") for i in range(5)]
    docs.insert(2, IncomingDocument("bad", "this one is POISON:poison for the provider"))
    enqueue(collection, docs)

    report = run().run_once()

    assert (report.embedded, report.failed) == (5, 1)
    statuses = dict(Document.objects.values_list("external_id", "status"))
    assert statuses.pop("bad") == DocumentStatus.FAILED
    assert set(statuses.values()) == {DocumentStatus.EMBEDDED}
    assert not Document.objects.filter(lease_owner__gt="").exists()


# The calls' threads record the circuit on their own connections, outside a test's transaction:
# this test commits, and the tables are emptied after it.
@pytest.mark.django_db(transaction=True)
def test_an_outage_during_concurrent_calls_defers_the_batch_whole(fake_collection, fake_provider):
    collection = remote(fake_collection, 4)
    fake_provider.mode = "503"
    enqueue(collection, [IncomingDocument("doc", TEXT)])

    report = run().run_once()

    assert (report.embedded, report.failed, report.deferred) == (0, 0, 1)
    assert Document.objects.get().status == DocumentStatus.PENDING
    assert not Chunk.objects.exists()
    # Every try of every call counted, from the calls' threads; the circuit opened at the 5th and
    # each call stopped retrying at its next failure: at most 4 calls x 3 tries, here fewer.
    circuit = ProviderCircuit.objects.get()
    assert circuit.state == "open" and 5 <= circuit.consecutive_failures < 4 * 3


def test_local_models_make_one_call_at_a_time_whatever_the_setting(hash_collection, fake_collection):
    Collection.objects.update(provider_concurrency=8)
    assert concurrency(Collection.objects.get(pk=hash_collection.pk)) == 1
    assert concurrency(Collection.objects.get(pk=fake_collection.pk)) == 8


@pytest.mark.parametrize("value", [0, 33, "many"])
def test_the_api_refuses_a_concurrency_outside_1_to_32_naming_the_field(admin_user, value):
    client = APIClient()
    client.force_authenticate(admin_user)
    body = {"name": "remote", "model": "local/hash-8", "dimensions": 8, "provider_concurrency": value}
    response = client.post("/api/v1/collections/", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert list(error["details"]) == ["provider_concurrency"], error
    assert not Collection.objects.filter(name="remote").exists()


def test_create_collection_takes_the_concurrency_and_refuses_nonsense():
    call_command(
        "create_collection", "remote", "--model", "local/hash-8", "--provider-concurrency", "6", stdout=io.StringIO()
    )
    assert Collection.objects.get(name="remote").provider_concurrency == 6
    with pytest.raises(CommandError, match="provider_concurrency"):
        call_command("create_collection", "other", "--model", "local/hash-8", "--provider-concurrency", "0")
    create_collection(name="defaulted", model="local/hash-8")
    assert Collection.objects.get(name="defaulted").provider_concurrency == 1
