"""Every critical path records its latency histogram: worker stages, claims and queue wait, provider
calls, busy seconds, enqueue and search from the API and the CLI, health checks, the reprocessing
and staleness passes, and the /metrics scrape itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from pipeline.models import BatchTiming, Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from reprocessing.staleness import detect_stale
from reprocessing.workflow import ReprocessingWorkflow
from tests.conftest import manage
from tests.tools import collected, slow_first_register
from tests.tools import parse_metrics as parse


def count(name: str, **labels: str) -> float:
    """This process's histogram count (single-process mode: the default registry)."""
    return REGISTRY.get_sample_value(f"{name}_count", labels) or 0.0


@pytest.mark.django_db(transaction=True)
def test_worker_and_cli_paths_record_their_histograms_in_multiprocess_mode(
    client, hash_collection, tmp_path, monkeypatch
):
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(6):
        (corpus / f"doc{i}.txt").write_text(f"Paragraph {i} about queues. " * 30)
    assert manage("enqueue", str(corpus), "--collection", "hashes", "--base", str(corpus), env=env).wait(60) == 0
    assert manage("run_pipeline", "--once", env=env).wait(timeout=120) == 0
    search = manage("search", "queues", "--collection", "hashes", env=env)
    assert search.wait(timeout=60) == 0

    m = parse(client.get("/metrics").content.decode())

    assert m[("embedding_pipeline_enqueue_seconds_count", (("source", "cli"),))] == 1
    assert m[("embedding_pipeline_search_seconds_count", (("source", "cli"),))] == 1
    # One claim that found the six documents (and the empty one that ended --once's drain).
    assert m[("embedding_pipeline_claim_seconds_count", ())] >= 1
    assert m[("embedding_pipeline_queue_wait_seconds_count", ())] == 6
    # Provider calls: the worker's batches (16 chunks each) and the search's query.
    assert m[("embedding_pipeline_provider_call_seconds_count", (("provider", "local"),))] >= 2
    # Busy seconds: once per batch and stage, so a batch's wall time is counted once, not per document.
    busy = {stage: m[("embedding_pipeline_stage_busy_seconds_total", (("stage", stage),))] for stage in
            ("claim", "chunking", "embedding", "storage")}  # fmt: skip
    assert all(seconds > 0 for seconds in busy.values())
    assert (
        busy["storage"]
        < m[
            (
                "embedding_pipeline_latency_seconds_sum",
                (("bulk", "false"), ("collection", "hashes"), ("stage", "storage")),
            )
        ]
    )
    assert m[("embedding_pipeline_cost_usd_total", (("collection", "hashes"),))] == 0  # a local model is free
    # The same batch in the database, for the optimizer without Prometheus.
    row = BatchTiming.objects.get()
    assert (row.documents, row.cost_usd) == (6, 0.0)
    assert row.total_seconds == pytest.approx(row.chunking_seconds + row.embedding_seconds + row.storage_seconds, 0.2)


def path_counts() -> dict[str, float]:
    """Observations so far of each path's histogram."""
    return {
        "enqueue": count("embedding_pipeline_enqueue_seconds", source="api"),
        "search": count("embedding_pipeline_search_seconds", source="api"),
        "queue": count("embedding_pipeline_health_check_seconds", check="queue"),
        "pgvector": count("embedding_pipeline_health_check_seconds", check="pgvector"),
        "reprocessing": collected("embedding_pipeline_reprocessing_pass_seconds_count"),
        "staleness": collected("embedding_pipeline_staleness_pass_seconds_count"),
        "scrape": count("embedding_pipeline_metrics_scrape_seconds"),
        "other": count("embedding_pipeline_enqueue_seconds", source="other"),
    }


@pytest.mark.django_db
def test_api_health_reprocessing_staleness_and_scrape_paths_record_their_histograms(client, api, hash_collection):
    before = path_counts()
    docs = [{"id": "a", "text": "first text about search"}, {"id": "b", "text": "second text"}]
    response = api.post("/api/v1/collections/hashes/documents/", data=json.dumps(docs), content_type="application/json")
    assert response.status_code == 202
    EmbeddingIngestionPipeline().drain()
    assert Document.objects.filter(status="embedded").count() == 2
    found = api.post(
        "/api/v1/collections/hashes/search/",
        data=json.dumps({"query": "search", "k": 1}),
        content_type="application/json",
    )
    assert found.status_code == 200
    assert api.get("/api/v1/health/").status_code in (200, 503)
    ReprocessingWorkflow().run_once()
    detect_stale()
    enqueue(hash_collection, [IncomingDocument("c", "from code")])
    client.get("/metrics")
    text = client.get("/metrics").content.decode()

    after = path_counts()
    assert {k: after[k] - before[k] for k in before} == {
        "enqueue": 1,
        "search": 1,
        "queue": 1,
        "pgvector": 1,
        "reprocessing": 1,
        "staleness": 1,
        "scrape": 2,
        "other": 1,
    }
    # The scrape shows the scrapes before it.
    m = parse(text)
    assert m[("embedding_pipeline_metrics_scrape_seconds_count", ())] == after["scrape"] - 1


def test_metric_names_follow_the_pipeline_prefix_and_are_defined_once():
    source = "\n".join(
        Path(p).read_text() for p in ("pipeline/metrics.py", "reprocessing/metrics.py", "embedportal/metrics.py")
    )
    for name in (
        "embedding_pipeline_stage_busy_seconds",
        "embedding_pipeline_claim_seconds",
        "embedding_pipeline_queue_wait_seconds",
        "embedding_pipeline_provider_call_seconds",
        "embedding_pipeline_enqueue_seconds",
        "embedding_pipeline_search_seconds",
        "embedding_pipeline_health_check_seconds",
        "embedding_pipeline_reprocessing_pass_seconds",
        "embedding_pipeline_staleness_pass_seconds",
        "embedding_pipeline_metrics_scrape_seconds",
        "embedding_pipeline_cost_usd",
    ):
        assert source.count(f'"{name}"') == 1, name


@pytest.mark.django_db
def test_a_workers_first_batch_does_not_time_the_models_load(hash_collection, monkeypatch):
    # A worker's first batch loaded LiteLLM and the local model (30 s with an OpenVINO export) inside its
    # embedding stage: every worker start recorded a latency SLO miss (the on-call drill's).
    first = slow_first_register(monkeypatch)
    enqueue(hash_collection, [IncomingDocument("a", "some text to embed")])
    EmbeddingIngestionPipeline().run_once()
    timing = BatchTiming.objects.get()
    assert first and timing.embedding_seconds < 0.5 and timing.total_seconds < 0.5
