"""The scrape-time DatabaseCollector, on a fresh registry as the /metrics view uses it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from pipeline.choices import ErrorType
from pipeline.embedding import PipelineError
from pipeline.queue import IncomingDocument, enqueue
from reprocessing.collectors import DatabaseCollector
from reprocessing.failures import record_failure, retry
from reprocessing.models import FailedDocument
from tests.tools import Samples, parse_metrics

pytestmark = pytest.mark.django_db


def scrape() -> Samples:
    registry = CollectorRegistry()
    registry.register(DatabaseCollector())
    return parse_metrics(generate_latest(registry).decode())


def test_collector_reports_queue_ages_dead_letters_and_stale_documents(hash_collection, clock):
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"text {i}", clock.now) for i in range(3)])
    docs = list(hash_collection.documents.order_by("external_id"))
    start = clock.now
    record_failure(docs[0].pk, PipelineError(ErrorType.RATE_LIMIT, "embedding", "429"), "429")
    record_failure(docs[1].pk, PipelineError(ErrorType.DISK_FULL, "storage", "full"), "full")
    FailedDocument.objects.filter(document=docs[1]).dead_letter()
    clock.advance(timedelta(hours=3))
    record_failure(docs[2].pk, PipelineError(ErrorType.RATE_LIMIT, "embedding", "429"), "429")
    retry(FailedDocument.objects.filter(document=docs[2]))  # requeued: counted as retrying

    m = scrape()
    assert m[("pipeline_reprocessing_queue_size", (("error_type", "rate_limit"), ("state", "waiting")))] == 1
    assert m[("pipeline_reprocessing_queue_size", (("error_type", "rate_limit"), ("state", "retrying")))] == 1
    assert m[("pipeline_reprocessing_queue_size", (("error_type", "api_error"), ("state", "retrying")))] == 0
    assert m[("pipeline_dead_letter_documents", (("error_type", "disk_full"),))] == 1
    # Ages 3 h and 0 s: one in the <= 5 min bucket, both by 1 d.
    assert m[("pipeline_reprocessing_queue_age_seconds_bucket", (("le", "300.0"),))] == 1
    assert m[("pipeline_reprocessing_queue_age_seconds_bucket", (("le", "7200.0"),))] == 1
    assert m[("pipeline_reprocessing_queue_age_seconds_bucket", (("le", "86400.0"),))] == 2
    assert m[("pipeline_reprocessing_queue_age_seconds_gcount", ())] == 2
    assert m[("pipeline_reprocessing_queue_age_seconds_gsum", ())] == (clock.now - start).total_seconds()
    # Never embedded, arrived 3 h ago, SLA 1 h: all three are stale.
    assert m[("pipeline_stale_documents_count", (("collection", "hashes"),))] == 3


def test_collector_reports_zero_for_a_healthy_collection(hash_collection):
    m = scrape()
    assert m[("pipeline_stale_documents_count", (("collection", "hashes"),))] == 0
    assert m[("pipeline_reprocessing_queue_age_seconds_gcount", ())] == 0


def test_only_a_pass_that_finished_counts(hash_collection, monkeypatch):
    from reprocessing.workflow import ReprocessingWorkflow

    def count() -> float:
        return scrape()[("embedding_pipeline_reprocessing_pass_seconds_count", ())]

    ReprocessingWorkflow().run_once()
    assert count() == 1
    # A pass failing every time must look stopped to EmbeddingPipelinePassesStopped, not busy.
    monkeypatch.setattr(FailedDocument.objects, "due", lambda now: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        ReprocessingWorkflow().run_once()
    assert count() == 1


def test_a_scratch_collection_has_no_per_collection_series(client, hash_collection, clock, settings):
    # An operations-test run's collections (new names each run) showed in Grafana's collection list and in
    # EmbeddingPipelineFreshnessSLAViolated{collection="__ops_test_2_1_stale"} (a drill on a fresh make run).
    from pipeline.collections import create_collection
    from pipeline.models import reserved_names

    with reserved_names():
        scratch = create_collection(name="__ops_test_9_1_stale", model="local/hash-16")
    for c in (scratch, hash_collection):
        enqueue(c, [IncomingDocument(f"{c.name}-old", "text", clock.now)])
    clock.advance(timedelta(hours=3))  # never embedded, arrived 3 h ago, SLA 1 h: stale in both
    client.get("/metrics")  # the per-collection series of the pipeline's workers, declared by a first scrape
    m = parse_metrics(client.get("/metrics").content.decode())
    assert m[("pipeline_stale_documents_count", (("collection", "hashes"),))] == 1
    assert m[("embedding_pipeline_collection_queue_depth", (("collection", "hashes"),))] == 1
    assert m[("embedding_pipeline_queue_depth", ())] == 2  # the workers drain its documents all the same
    assert not [key for key in m if ("collection", scratch.name) in key[1]]
