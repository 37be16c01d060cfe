"""Optional reranking through litellm.rerank over real HTTP (the fake provider's Cohere-compatible
/v1/rerank ranks by shared words): the reranked order is served; a failing or timing-out reranker
falls back to the search order, counted, and its circuit opens after repeated failures."""

from __future__ import annotations

import logging

import pytest
from django.test import Client

from pipeline.choices import CircuitState
from pipeline.models import Collection, ProviderCircuit
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from pipeline.search import search
from tests.tools import error_of, metric_sum, parse_metrics

KEY = "rr-secret-key-987654"
# Hash vectors (local/hash-16) rank these pages arbitrarily but deterministically, the cluster page last;
# the reranker counts the query's words a chunk holds, and the cluster page holds four of five.
PAGES = {
    "vacuum.md": "# Vacuum\n\nVacuum, vacuum, vacuum.",
    "cluster.md": "# Cluster\n\nRun it on the cluster at night.",
    "weekly.md": "# Weekly\n\nWeekly, at night.",
}
QUERY = "vacuum the cluster at night"


@pytest.fixture
def reranked(hash_collection, fake_provider, monkeypatch, settings):
    monkeypatch.setenv("RERANK_KEY", KEY)
    settings.EMBEDPORTAL_CIRCUIT_FAILURES = 2
    enqueue(hash_collection, [IncomingDocument(k, v) for k, v in PAGES.items()])
    assert EmbeddingIngestionPipeline().drain().embedded == len(PAGES)
    Collection.objects.filter(pk=hash_collection.pk).update(
        rerank_model="cohere/rerank-english-v3.0",
        rerank_api_base=fake_provider.api_base,
        rerank_api_key_env="RERANK_KEY",
    )
    hash_collection.refresh_from_db()
    return hash_collection


def documents(collection: Collection, mode: str = "vector") -> list[str]:
    return [h.document_id for h in search(collection, QUERY, 3, mode=mode)]


def unreranked(collection: Collection) -> list[str]:
    collection.rerank_model = ""
    try:
        return documents(collection)
    finally:
        collection.rerank_model = "cohere/rerank-english-v3.0"


def fallbacks(reason: str) -> float:
    return metric_sum(
        parse_metrics(Client().get("/metrics").content.decode()),
        "embedding_pipeline_rerank_fallbacks_total",
        reason=reason,
    )


def test_the_reranker_reorders_search_candidates_over_http(reranked, fake_provider):
    before = unreranked(reranked)
    assert before == ["vacuum.md", "weekly.md", "cluster.md"], "the vector ranking this test starts from"
    assert documents(reranked) == ["cluster.md", "weekly.md", "vacuum.md"]
    call = fake_provider.requests[-1]
    assert call["body"]["query"] == QUERY and call["auth"] == f"Bearer {KEY}"
    assert sorted(call["body"]["documents"]) == sorted(h.text for h in search(reranked, QUERY, 3, mode="vector"))
    hits = search(reranked, QUERY, 3, mode="vector")
    assert hits[0].score == 0.8, "a reranked hit carries the reranker's relevance score"


@pytest.mark.parametrize("fault, reason", [("500", "api_error"), ("timeout", "timeout")])
def test_a_failing_reranker_falls_back_to_the_search_order_and_its_circuit_opens(
    reranked, fake_provider, settings, fault, reason
):
    before = unreranked(reranked)
    settings.EMBEDPORTAL_SEARCH_PROVIDER_TIMEOUT = 0.5
    fake_provider.timeout_seconds = 2.0
    fake_provider.mode = fault
    counted = fallbacks(reason)
    assert documents(reranked) == before
    assert fallbacks(reason) == counted + 1
    assert ProviderCircuit.objects.get(model="cohere/rerank-english-v3.0").state == CircuitState.CLOSED
    assert documents(reranked) == before
    circuit = ProviderCircuit.objects.get(model="cohere/rerank-english-v3.0")
    assert circuit.state == CircuitState.OPEN and circuit.last_error_type == reason
    asked, skipped = len(fake_provider.requests), fallbacks("circuit_open")
    assert documents(reranked) == before
    assert len(fake_provider.requests) == asked, "an open circuit is not called"
    assert fallbacks("circuit_open") == skipped + 1


def test_an_answer_after_the_wait_closes_the_rerank_circuit(reranked, fake_provider):
    fake_provider.mode = "500"
    documents(reranked), documents(reranked)
    ProviderCircuit.objects.update(next_probe_at="2000-01-01T00:00Z")
    fake_provider.mode = "ok"
    assert documents(reranked)[0] == "cluster.md"
    assert ProviderCircuit.objects.get(model="cohere/rerank-english-v3.0").state == CircuitState.CLOSED


def test_a_rerank_key_to_a_host_no_longer_bound_is_never_sent(reranked, fake_provider, settings, caplog):
    before, counted = unreranked(reranked), fallbacks("auth")
    settings.EMBEDPORTAL_PROVIDER_KEY_HOSTS = {}  # the operator removed the binding after the reranker was set
    with caplog.at_level(logging.WARNING, logger="pipeline.rerank"):
        assert documents(reranked) == before
    assert fake_provider.requests == [] and fallbacks("auth") == counted + 1
    assert "RERANK_KEY may not be sent to 127.0.0.1" in caplog.text and KEY not in caplog.text


def test_the_rerank_key_never_reaches_the_logs(reranked, fake_provider, caplog):
    fake_provider.mode = "401"  # echoes the key, as real providers do
    with caplog.at_level(logging.WARNING, logger="pipeline.rerank"):
        assert documents(reranked) == unreranked(reranked)
    assert "reranker" in caplog.text and KEY not in caplog.text


def test_rerank_settings_through_the_api_without_credentials(api, hash_collection):
    url = f"/api/v1/collections/{hash_collection.name}/"
    answer = api.patch(url, {"rerank_api_base": "https://user:pw@rerank.example/v1"}, format="json")
    assert "credentials" in str(error_of(answer, 400))
    answer = api.patch(
        url,
        {
            "rerank_model": "cohere/rerank-english-v3.0",
            "rerank_api_base": "https://rerank.example/v1",
            "rerank_api_key_env": "RERANK_KEY",
        },
        format="json",
    )
    assert answer.status_code == 200, answer.content
    assert answer.json()["rerank_model"] == "cohere/rerank-english-v3.0"
    assert Collection.objects.get(pk=hash_collection.pk).rerank_api_key_env == "RERANK_KEY"


def test_the_admin_form_edits_the_reranker_and_shows_no_key(admin_client, reranked):
    page = admin_client.get(f"/admin/pipeline/collection/{reranked.pk}/change/").content.decode()
    assert 'name="rerank_model"' in page and 'value="cohere/rerank-english-v3.0"' in page
    assert 'name="rerank_api_key_env"' in page and 'value="RERANK_KEY"' in page and KEY not in page
