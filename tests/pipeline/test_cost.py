"""Embedding cost from LiteLLM's prices: per batch, per collection (the database and the counter), in the admin."""

from __future__ import annotations

import litellm
import pytest
from prometheus_client import REGISTRY

from pipeline.models import BatchTiming, Chunk, CollectionCost
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from tests.factories import fake_backed

pytestmark = pytest.mark.django_db

PRICED_MODEL = "openai/text-embedding-3-small"


def counter(collection: str) -> float:
    return REGISTRY.get_sample_value("embedding_pipeline_cost_usd_total", {"collection": collection}) or 0.0


@pytest.fixture
def priced(fake_provider, monkeypatch):
    """A model LiteLLM has a price for, served by the local fake provider (8 dims, 1 token per input)."""
    monkeypatch.setenv("PRICED_KEY", "sk-test-priced-123456")
    return fake_backed("priced", fake_provider.api_base, model=PRICED_MODEL, api_key_env="PRICED_KEY")


def test_cost_of_a_priced_model_is_its_tokens_times_litellms_price(priced, fake_provider):
    price = litellm.model_cost["text-embedding-3-small"]["input_cost_per_token"]
    before = counter("priced")
    enqueue(priced, [IncomingDocument(f"d{i}", f"Sentence number {i} of the priced corpus. " * 12) for i in range(5)])

    report = EmbeddingIngestionPipeline().drain()

    assert report.embedded == 5
    chunks = Chunk.objects.filter(collection=priced).count()
    # The fake provider bills one token per input: every chunk was one input of one successful call.
    tokens = sum(len(r["body"]["input"]) for r in fake_provider.requests)
    assert tokens == chunks > 5
    cost = CollectionCost.objects.get(collection=priced)
    assert (cost.documents, cost.tokens) == (5, tokens)
    assert cost.cost_usd == pytest.approx(tokens * price) and cost.cost_usd > 0
    assert cost.per_document == pytest.approx(tokens * price / 5)
    assert sum(BatchTiming.objects.filter(collection=priced).values_list("cost_usd", flat=True)) == pytest.approx(
        cost.cost_usd
    )
    assert counter("priced") - before == pytest.approx(tokens * price)


def test_local_models_cost_nothing(hash_collection):
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"local text {i}") for i in range(3)])
    EmbeddingIngestionPipeline().drain()
    cost = CollectionCost.objects.get(collection=hash_collection)
    assert (cost.documents, cost.cost_usd) == (3, 0.0)


def test_costs_add_up_across_batches(priced):
    price = litellm.model_cost["text-embedding-3-small"]["input_cost_per_token"]
    enqueue(priced, [IncomingDocument("a", "first wave")])
    EmbeddingIngestionPipeline().drain()
    enqueue(priced, [IncomingDocument("b", "second wave"), IncomingDocument("c", "second wave too")])
    EmbeddingIngestionPipeline().drain()
    cost = CollectionCost.objects.get(collection=priced)
    assert (cost.documents, cost.tokens) == (3, 3)
    assert cost.cost_usd == pytest.approx(3 * price)


def test_admin_collection_list_and_page_show_the_cost(admin_client, priced):
    enqueue(priced, [IncomingDocument("a", "one priced document")])
    EmbeddingIngestionPipeline().drain()
    price = litellm.model_cost["text-embedding-3-small"]["input_cost_per_token"]

    listing = admin_client.get("/admin/pipeline/collection/").content.decode()
    assert "Embedding cost (USD)" in listing
    assert f"${price:.6f}" in listing
    page = admin_client.get(f"/admin/pipeline/collection/{priced.pk}/change/").content.decode()
    assert f"${price:.6f} (${price:.8f}/doc)" in page
