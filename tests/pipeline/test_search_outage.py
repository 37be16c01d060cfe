"""Search while the embedding provider is down: a hybrid search is served from its keyword ranking (and says
so), an open circuit is not called, a hanging provider holds a search for EMBEDPORTAL_SEARCH_PROVIDER_TIMEOUT
at most, and measurements fail instead of scoring one ranking as another."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from pipeline.choices import CircuitState, ErrorType
from pipeline.embedding import PipelineError
from pipeline.models import ProviderCircuit
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from pipeline.search import search
from tests.tools import error_of, metric_sum, parse_metrics

PAGES = {
    "vacuum.md": "Vacuum reclaims the space of dead rows; run it weekly.",
    "backup.md": "Take a base backup, then archive the write-ahead log.",
    "index.md": "An index speeds up lookups by a column.",
}


@pytest.fixture
def embedded(fake_collection, fake_provider):
    enqueue(fake_collection, [IncomingDocument(k, v) for k, v in PAGES.items()])
    assert EmbeddingIngestionPipeline().drain().embedded == len(PAGES)
    return fake_collection


def fallbacks(reason: str) -> float:
    text = Client().get("/metrics").content.decode()
    return metric_sum(parse_metrics(text), "embedding_pipeline_search_fallbacks_total", reason=reason)


def api_search(api, collection, mode: str):
    return api.post(
        f"/api/v1/collections/{collection.name}/search/", {"query": "archive the log", "mode": mode}, format="json"
    )


def test_a_failing_provider_serves_hybrid_searches_from_keywords_and_fails_vector_ones(api, embedded, fake_provider):
    answer = api_search(api, embedded, "hybrid").json()
    assert (answer["mode"], answer["fallback"]) == ("hybrid", "")
    fake_provider.mode = "500"
    counted = fallbacks("api_error")

    answer = api_search(api, embedded, "hybrid")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["mode"], body["fallback"]) == ("keyword", "api_error")
    assert body["results"][0]["document_id"] == "backup.md"
    assert fallbacks("api_error") == counted + 1
    assert "embedding the query failed" in error_of(api_search(api, embedded, "vector"), 502)["message"]
    # A measurement must not score the keyword ranking as the hybrid one: it fails.
    with pytest.raises(PipelineError):
        search(embedded, "archive the log", mode="hybrid")


def test_an_open_circuit_is_not_called_by_searches(api, embedded, fake_provider, caplog):
    ProviderCircuit.objects.record_failure(embedded, ErrorType.API_ERROR, 1, timedelta(minutes=5))
    asked, counted = len(fake_provider.requests), fallbacks("circuit_open")

    body = api_search(api, embedded, "hybrid").json()
    assert (body["mode"], body["fallback"]) == ("keyword", "circuit_open")
    assert "served by keywords alone" not in caplog.text, "each refused search logged (hundreds a minute)"
    assert "circuit of openai/fake-embedder@127.0.0.1" in error_of(api_search(api, embedded, "vector"), 502)["message"]
    assert len(fake_provider.requests) == asked, "a search called a provider whose circuit is open"
    assert fallbacks("circuit_open") == counted + 1

    stdout, stderr = StringIO(), StringIO()
    call_command("search", "archive the log", collection=embedded.name, mode="hybrid", stdout=stdout, stderr=stderr)
    assert "backup.md" in stdout.getvalue()
    assert "could not be embedded (circuit_open): ranked by keywords alone" in stderr.getvalue()


def test_a_hanging_provider_holds_a_search_for_the_search_timeout_only(api, embedded, fake_provider, settings):
    # The provider answers after 5 s, well within the embedding timeout (60 s) the search used to wait.
    settings.EMBEDPORTAL_SEARCH_PROVIDER_TIMEOUT = 0.5
    fake_provider.timeout_seconds = 5.0
    fake_provider.mode = "timeout"

    body = api_search(api, embedded, "hybrid").json()
    assert (body["mode"], body["fallback"]) == ("keyword", "timeout")


def test_searches_a_provider_fails_open_its_circuit_and_an_answer_restarts_the_count(
    api, embedded, fake_provider, settings
):
    # The workers' calls wait a minute each: counted alone, they opened the circuit minutes into a hang.
    settings.EMBEDPORTAL_CIRCUIT_FAILURES = 2
    settings.EMBEDPORTAL_SEARCH_PROVIDER_TIMEOUT = 0.5
    fake_provider.timeout_seconds = 5.0
    fake_provider.script = ["timeout", "ok", "timeout"]  # never two failures in a row
    reasons = [api_search(api, embedded, "hybrid").json()["fallback"] for _ in range(3)]
    assert reasons == ["timeout", "", "timeout"]
    assert ProviderCircuit.objects.endpoint(embedded).get().state == CircuitState.CLOSED

    fake_provider.mode = "500"
    assert api_search(api, embedded, "hybrid").json()["fallback"] == "api_error"
    assert ProviderCircuit.objects.endpoint(embedded).get().state == CircuitState.OPEN
    asked = len(fake_provider.requests)
    assert api_search(api, embedded, "hybrid").json()["fallback"] == "circuit_open"
    assert len(fake_provider.requests) == asked
