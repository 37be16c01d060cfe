"""Proof that the scenarios can fail: for every category, break the path for real and see the
matching scenario fail with a message naming the cause (and pass on the healthy system)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.contrib.auth.models import Permission
from django.db import connection

from pipeline import backfill
from pipeline.collections import create_collection
from pipeline.models import Collection, Document, GoldenQuery, WorkerHeartbeat
from pipeline.pipeline import EmbeddingIngestionPipeline, RetryPolicy
from pipeline.queue import IncomingDocument, enqueue
from testing.choices import Outcome
from testing.context import OPS_PERMISSIONS, Context, ops_user
from testing.registry import ScenarioFailed
from tests.conftest import wait_for
from tests.factories import fake_backed
from tests.testing.conftest import run_one

# --- normal: stop the worker -------------------------------------------------------------------


def test_canary_fails_naming_stopped_workers_and_passes_with_one_running(own_worker, settings):
    own_worker.start()
    # The passing run gets the configured wait (a loaded machine needs it); the failing ones wait 5 s.
    assert run_one("changed_document_reembedded_unchanged_skipped").outcome == Outcome.PASSED

    own_worker.stop()
    settings.EMBEDPORTAL_OPS_TEST_WAIT_SECONDS = 5
    result = run_one("canary_embedded_and_found")
    assert result.outcome == Outcome.FAILED and result.attempts == 2
    assert "no pipeline worker is running" in result.message

    # A hung worker still looks alive: the scenario waits, then says what it saw.
    WorkerHeartbeat.objects.beat("worker", worker="host:hung")
    result = run_one("changed_document_reembedded_unchanged_skipped")
    assert result.outcome == Outcome.FAILED
    assert "not processed by the workers" in result.message and "pending" in result.message


# --- edge and normal: the API refuses the ops user a write or a delete ------------------------------


def refused(monkeypatch, codename: str) -> None:
    """The ops user without `codename`; ops_user() gives back what the scenarios need, so not that."""
    monkeypatch.setattr("testing.context.OPS_PERMISSIONS", [p for p in OPS_PERMISSIONS if p != codename])
    ops_user().user_permissions.remove(Permission.objects.get(codename=codename))


@pytest.mark.parametrize(
    ("scenario", "codename", "message"),
    [
        ("duplicate_ids_in_one_batch_refused", "add_document", "answered 403, expected 400"),
        ("deleted_document_leaves_search", "delete_document", "deleting a document through the API answered 403"),
    ],
)
def test_api_scenarios_fail_when_the_api_refuses_them(live_worker, monkeypatch, scenario, codename, message):
    assert run_one(scenario).outcome == Outcome.PASSED
    refused(monkeypatch, codename)

    result = run_one(scenario)

    assert result.outcome == Outcome.FAILED
    assert message in result.message


def test_an_ops_user_made_by_an_older_version_is_given_what_the_scenarios_need(db):
    ops_user().user_permissions.remove(Permission.objects.get(codename="delete_document"))  # before 6 Dec 2026
    assert ops_user().has_perms([f"pipeline.{codename}" for codename in OPS_PERMISSIONS])


# --- failure: the pipeline stops retrying transient provider errors ----------------------------


def test_failure_scenario_fails_when_the_worker_does_not_retry(own_worker):
    own_worker.start(EMBEDPORTAL_BATCH_TRIES="1")

    result = run_one("provider_5xx_retried_then_deferred")

    assert result.outcome == Outcome.FAILED
    assert "the provider saw 1 request(s): a transient 500 was not retried" in result.message


def test_failure_scenario_passes_with_retries(live_worker):
    assert run_one("provider_5xx_retried_then_deferred").outcome == Outcome.PASSED


# --- integration: a failing model endpoint, a dropped HNSW index -------------------------------


def test_model_scenario_fails_naming_an_unreachable_endpoint(live_worker):
    create_collection(
        name="broken",
        model="openai/remote",
        api_base="http://127.0.0.1:9/v1",
        api_key_env="DJANGO_SETTINGS_MODULE",
        dimensions=8,
    )
    create_collection(name="fine", model="local/hash-8")

    assert run_one("model_upstream_answers", collections=["fine"]).outcome == Outcome.PASSED
    result = run_one("model_upstream_answers", collections=["broken"])

    assert result.outcome == Outcome.FAILED and result.target == "broken"
    assert "openai/remote failed: api_error" in result.message and "Connection" in result.message


def test_index_scenario_fails_naming_a_dropped_hnsw_index(live_worker):
    users = create_collection(name="users", model="local/hash-16")
    assert run_one("search_uses_hnsw_index").outcome == Outcome.PASSED

    with connection.cursor() as cur:
        cur.execute(f"DROP INDEX {users.index_name}")
    result = run_one("search_uses_hnsw_index")

    assert result.outcome == Outcome.FAILED
    assert f"users ({users.index_name})" in result.message and "without their HNSW index" in result.message


# --- regression: a chunking change drops recall ------------------------------------------------


def test_regression_fails_when_a_chunking_change_drops_recall(live_worker):
    users = create_collection(
        name="faq",
        model="local/hash-32",
        chunk_unit="characters",
        chunk_size=400,
        chunk_overlap=0,
        # Hash vectors find the chunk equal to the query, and nothing else ranks: vector search alone.
        contextual_chunks=False,
        search_mode="vector",
    )
    texts = {f"doc-{i}": f"answer number {i} explains one topic in a sentence or two" for i in range(6)}
    enqueue(users, [IncomingDocument(k, v) for k, v in texts.items()])
    for doc_id, text in texts.items():  # hash vectors: a query finds the chunk equal to it
        GoldenQuery.objects.create(collection=users, query=text, expected_document_id=doc_id)
    wait_for(lambda: not Document.objects.exclude(status="embedded").exists())
    baseline = run_one("regression_operator_golden_queries", collections=["faq"])
    assert baseline.outcome == Outcome.PASSED and baseline.details["recall_at_k"] == 1.0

    # Chunks of 16 characters no longer equal any query: retrieval quietly gets worse.
    Collection.objects.filter(pk=users.pk).update(chunk_size=16)
    backfill.reembed(Collection.objects.filter(pk=users.pk))
    wait_for(lambda: not Document.objects.exclude(status="embedded").exists())
    result = run_one("regression_operator_golden_queries", collections=["faq"])

    assert result.outcome == Outcome.FAILED
    assert result.message.startswith("recall_at_k 0.")
    assert f"dropped below the last passing run's 1.000 (run {baseline.run_id})" in result.message


# --- load: refused while users' work is queued, fails without workers --------------------------


def test_load_refuses_while_user_documents_are_queued(live_worker):
    users = create_collection(name="busy", model="local/hash-8")
    Collection.objects.filter(pk=users.pk).pause()
    enqueue(users, [IncomingDocument("waiting", "a user's document")])
    # Paused collections' documents are not claimable: no backlog.
    assert run_one("bounded_ingest_and_search_load").outcome == Outcome.PASSED

    Collection.objects.filter(pk=users.pk).update(paused=False)
    Document.objects.filter(collection=users).update(available_at="2999-01-01T00:00:00Z")
    result = run_one("bounded_ingest_and_search_load")

    assert result.outcome == Outcome.SKIPPED
    assert "refused: 1 user document(s) are queued" in result.message


def test_load_fails_without_workers(own_worker, settings):
    settings.EMBEDPORTAL_OPS_TEST_WAIT_SECONDS = 3

    result = run_one("bounded_ingest_and_search_load")

    assert result.outcome == Outcome.FAILED and "no pipeline worker is running" in result.message


# --- integration: a scrape-time collector dropped from /metrics --------------------------------


def test_metrics_scenarios_pass_where_no_process_has_written_a_sample_yet(transactional_db, tmp_path, monkeypatch):
    # As `make run` and the pods run it: web, workers and test runner share a multiprocess directory,
    # and on a fresh deployment no error has happened, so no process has an error sample to write.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    for name in ("metrics_expose_pipeline_series", "metrics_used_by_rules_and_dashboards_exist"):
        result = run_one(name)
        assert result.outcome == Outcome.PASSED, f"{name}: {result.message}"


def test_metrics_scenario_fails_naming_a_metric_the_rules_read_that_no_collector_exports(transactional_db, settings):
    # Healthy, on an empty database: gauges without a value yet (no capacity measurement, no
    # documentation page) are declared by their collectors, which is enough.
    result = run_one("metrics_used_by_rules_and_dashboards_exist")
    assert result.outcome == Outcome.PASSED, result.message
    assert "embedding_pipeline_capacity_docs_per_second" in result.details["declared_without_samples"]

    settings.EMBEDPORTAL_METRICS_COLLECTORS = [
        p for p in settings.EMBEDPORTAL_METRICS_COLLECTORS if p != "testing.collectors.DatabaseCollector"
    ]
    result = run_one("metrics_used_by_rules_and_dashboards_exist")

    assert result.outcome == Outcome.FAILED
    assert "absent from /metrics" in result.message
    assert (
        "test_pass_rate_embedding_pipeline_operations_total (in grafana/prometheus/ops-tests.rules.yml)"
        in result.message
    )


# --- the empty cells' scenarios: break the product path each one exercises ---------------------


def test_enqueue_failure_scenario_fails_when_validation_is_skipped(live_worker, monkeypatch):
    monkeypatch.setattr("pipeline.queue.validate", lambda doc: None)

    result = run_one("bad_enqueue_requests_refused_whole")

    assert result.outcome == Outcome.FAILED
    assert "a batch with NUL in metadata answered 500" in result.message


def test_search_failure_scenario_fails_when_a_provider_error_escapes_as_500(live_worker, monkeypatch):
    class NeverRaised(Exception):
        pass

    monkeypatch.setattr("pipeline.api.views.PipelineError", NeverRaised)

    result = run_one("search_provider_down_answers_502")

    assert result.outcome == Outcome.FAILED
    assert "search with the provider answering 500 answered 500, expected 502" in result.message


def test_search_failure_scenario_fails_when_a_hybrid_search_does_not_fall_back_to_keywords(live_worker, monkeypatch):
    from pipeline import search

    real = search.search
    monkeypatch.setattr(search, "search", lambda *args, fallback=False, **kwargs: real(*args, **kwargs))

    result = run_one("search_provider_down_answers_502")

    assert result.outcome == Outcome.FAILED
    assert "a hybrid search with the provider answering 500 answered 502" in result.message


def test_health_failure_scenario_fails_when_the_model_check_skips_reserved_collections(live_worker, monkeypatch):
    from pipeline import health

    real = health._configurations

    def users_only():
        return {k: v for k, v in real().items() if not v[0].is_reserved}

    monkeypatch.setattr(health, "_configurations", users_only)

    result = run_one("health_names_a_failing_model_endpoint")

    assert result.outcome == Outcome.FAILED
    assert "health answered 200 with a model endpoint failing" in result.message


def test_staleness_failure_scenario_fails_when_the_pass_ignores_open_failures(live_worker, monkeypatch):
    from reprocessing import staleness

    monkeypatch.setattr(
        staleness, "requeue_candidates", lambda now: staleness.stale_documents(now).exclude(status="pending")
    )

    result = run_one("stale_failed_document_left_to_its_backoff")

    assert result.outcome == Outcome.FAILED
    assert "the staleness pass would requeue ['broken'] despite their open failure" in result.message


def test_staleness_edge_scenario_fails_when_the_pass_requeues_queued_documents(live_worker, monkeypatch):
    from reprocessing import staleness

    monkeypatch.setattr(staleness, "requeue_candidates", staleness.stale_documents)

    result = run_one("staleness_sla_boundary_and_requeued_once")

    assert result.outcome == Outcome.FAILED
    assert "the staleness pass would take ['doc'] again while it is queued" in result.message


def test_metrics_failure_scenario_fails_when_the_reprocessing_gauges_are_not_collected(live_worker, settings):
    settings.EMBEDPORTAL_METRICS_COLLECTORS = [
        p for p in settings.EMBEDPORTAL_METRICS_COLLECTORS if p != "reprocessing.collectors.DatabaseCollector"
    ]

    result = run_one("metrics_answer_through_a_provider_fault")

    assert result.outcome == Outcome.FAILED
    assert "pipeline_reprocessing_queue_size{state=waiting,error_type=auth} is 0" in result.message


def test_a_wait_on_documents_the_workers_deferred_names_the_provider_not_the_workers(db, fake_provider, monkeypatch):
    # Seen when a configuration-change run copied a collection whose provider could not be called:
    # the scenario said "the workers are stopped, stuck or busy elsewhere" while they were fine.
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-test")
    fake_provider.mode = "500"
    collection = fake_backed("down", fake_provider.api_base)
    enqueue(collection, [IncomingDocument("a", "one"), IncomingDocument("b", "two")])
    EmbeddingIngestionPipeline(retry=RetryPolicy.from_settings(sleep=lambda s: None)).run_once()
    WorkerHeartbeat.objects.beat("worker", worker="host:alive")

    with pytest.raises(ScenarioFailed) as failed:
        Context(SimpleNamespace(pk=1), SimpleNamespace(timeout=10)).wait_documents(collection, timeout=0.2)
    assert "the workers deferred them, deferred: api_error" in str(failed.value)
    assert "busy elsewhere" not in str(failed.value)
