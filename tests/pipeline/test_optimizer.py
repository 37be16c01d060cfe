"""EmbeddingPipelineOperationsOptimizer: percentiles per stage and collection, the bottleneck,
recommendations, applying a change and keeping or reverting it; the command and the API."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from pipeline import history, recording
from pipeline.choices import OptimizationStatus, Stage
from pipeline.models import BatchTiming, Collection, OptimizationChange
from pipeline.performance.optimizer import (
    STAGES,
    EmbeddingPipelineOperationsOptimizer,
    OptimizerError,
    Recommendation,
    analyse,
    apply,
    evaluate_pending,
)
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from tests.tools import client_with, error_of

pytestmark = pytest.mark.django_db

PERFORMANCE = "/api/v1/embedding-pipeline-operations/performance"


def batch(collection: Collection, ago: float, *, worker: str = "w1", documents: int = 10, chunks: int = 40,
          claim: float = 0.01, chunking: float = 0.02, embedding: float = 0.5, storage: float = 0.05,
          queue_wait: float = 0.1, batch_size: int | None = None) -> None:  # fmt: skip
    """A batch row as a worker writes it, finished `ago` seconds before now."""
    result = recording.BatchResult(
        collection, worker, documents, claim, queue_wait, batch_size or collection.batch_size, documents, chunks=chunks
    )
    result.seconds.update({Stage.CHUNKING: chunking, Stage.EMBEDDING: embedding, Stage.STORAGE: storage})
    result.total_seconds = chunking + embedding + storage
    recording.record(result, at=timezone.now() - timedelta(seconds=ago))


def saturated_workers(collection: Collection, waiting: int | None = None) -> None:
    """Two workers back to back, their documents waiting 30 s for 0.6 s of processing, and `waiting`
    documents due now (default: one claim's worth, the least that is a backlog still there)."""
    for worker in ("w1", "w2"):
        for i in range(10):
            batch(collection, 100 - i * 0.6, worker=worker, queue_wait=30, embedding=0.5)
    waiting = settings.EMBEDPORTAL_CLAIM_BATCH if waiting is None else waiting
    enqueue(collection, [IncomingDocument(f"waiting-{i}", f"Waiting {i}.") for i in range(waiting)])


def embedding_bound(collection: Collection, n: int = 12, start: float = 600) -> None:
    """Batches whose embedding dominates, with varying chunk counts: 0.1 s per call plus 1 ms per chunk."""
    for i in range(n):
        chunks = 20 + 7 * i
        calls = -(-chunks // collection.batch_size)
        batch(collection, start - i * 5, chunks=chunks, embedding=0.1 * calls + 0.001 * chunks)


def test_command_json_reports_percentiles_per_stage_after_a_real_drain(hash_collection):
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"Paragraph {i}. " * 60) for i in range(20)])
    EmbeddingIngestionPipeline(claim_batch=8).drain()
    out = StringIO()

    call_command("optimize", "--json", stdout=out)

    result = json.loads(out.getvalue())
    assert {"stages", "bottleneck", "recommendations"} <= set(result)
    assert set(result["stages"]) == set(STAGES)
    for stage in STAGES:
        p = result["stages"][stage]
        assert p["count"] == 20
        assert 0 <= p["p50"] <= p["p95"] <= p["p99"]
    # Each document's total is the sum of its stages, so no stage's percentile can exceed the total's.
    total = result["stages"]["total"]["p95"]
    assert all(result["stages"][s]["p95"] <= total + 1e-6 for s in ("chunking", "embedding", "storage"))
    assert result["source"] == "database"
    assert result["bottleneck"]["stage"] in {"claim", "chunking", "embedding", "storage", "workers"}
    assert result["collections"]["hashes"]["documents"] == 20
    assert result["collections"]["hashes"]["batches"] == 3


def test_percentiles_weight_each_batch_by_its_documents(hash_collection):
    batch(hash_collection, 60, documents=90, embedding=0.1)
    batch(hash_collection, 30, documents=10, embedding=5.0)
    stages = analyse().stages
    assert stages["embedding"].count == 100
    assert stages["embedding"].p50 == pytest.approx(0.1)
    # 90% of documents waited 0.1 s: the p95 lies in the slow batch.
    assert stages["embedding"].p95 == pytest.approx(5.0)


def test_embedding_bottleneck_recommends_a_larger_batch_with_the_fitted_call_cost(hash_collection):
    embedding_bound(hash_collection)

    a = analyse()

    assert a.bottleneck["stage"] == "embedding"
    assert a.bottleneck["share_p95"] > 0.8
    rec = next(r for r in a.recommendations if r.id == "batch-size-hashes")
    assert (rec.setting, rec.current, rec.proposed, rec.appliable) == ("batch_size", 16, 32, True)
    assert "100.0 ms fixed cost per call" in rec.expected_effect


def test_saturated_workers_with_a_queue_make_workers_the_bottleneck(hash_collection):
    saturated_workers(hash_collection)
    a = analyse()
    assert a.bottleneck["stage"] == "workers"
    assert a.bottleneck["workers_busy"] > 0.8
    rec = next(r for r in a.recommendations if r.id == "workers")
    assert (rec.setting, rec.current, rec.proposed) == ("Q_WORKERS", 2, 3)
    # Within a batch embedding still dominates: making it cheaper is capacity too.
    assert a.bottleneck["batch_stage"] == "embedding"
    assert "batch-size-hashes" in [r.id for r in a.recommendations]


def test_a_backlog_drained_since_is_no_call_for_more_workers(hash_collection):
    # The same saturated hour, but nothing waits now: the wait was an outage's (or a pause's, or a first
    # load's) backlog, which the workers have drained. More workers would not have helped the outage.
    saturated_workers(hash_collection, waiting=settings.EMBEDPORTAL_CLAIM_BATCH - 1)
    a = analyse()
    assert a.bottleneck["stage"] == "embedding" and a.bottleneck["workers_busy"] > 0.8
    assert "a backlog drained, not too few workers" in a.bottleneck["reason"]
    assert "workers" not in [r.id for r in a.recommendations]
    assert analyse(hash_collection).collections["hashes"]["bottleneck"]["stage"] == "embedding"


def test_utilisation_is_each_stage_share_of_the_workers_spans_across_the_cluster(hash_collection):
    # Two workers (on any machine: each writes its own batch rows), four back-to-back 1 s batches each:
    # a span of 4 s per worker, 1 s of it embedding and 3 s storage.
    for worker in ("pod-a/w1", "pod-b/w1"):
        for i in range(4):
            batch(hash_collection, 100 - i, worker=worker, claim=0.0, chunking=0.0, embedding=0.25, storage=0.75)

    a = analyse()

    assert (a.source, a.workers, a.documents) == ("database", 2, 80)
    assert a.utilisation["embedding"] == pytest.approx(0.25, rel=0.01)
    assert a.utilisation["storage"] == pytest.approx(0.75, rel=0.01)
    assert a.stages["total"].count == 80 and a.stages["storage"].p50 == pytest.approx(0.75)


def test_workers_are_those_running_at_once_not_every_worker_id_a_restart_made(hash_collection):
    # Two workers for 30 minutes, each restarted at 10 and 20 minutes: six ids, two at a time.
    for worker in ("a1", "b1", "a2", "b2", "a3", "b3"):
        generation = int(worker[1]) - 1
        for i in range(10):
            batch(hash_collection, 1800 - generation * 600 - i * 60, worker=worker, queue_wait=30)
    assert analyse().workers == 2


def test_the_cluster_figures_count_every_collections_batch_rows(hash_collection):
    from pipeline.collections import create_collection

    other = create_collection(name="others", model="local/hash-16", chunk_size=200)
    batch(hash_collection, 60, documents=30, embedding=0.1)
    batch(other, 30, documents=10, embedding=0.1, storage=1.0)

    a = analyse()

    assert a.documents == 40 and a.stages["embedding"].count == 40
    assert {name: f["documents"] for name, f in a.collections.items()} == {"hashes": 30, "others": 10}
    # One collection's analysis reads only its rows.
    assert analyse(other).documents == 10 and analyse(other).stages["storage"].p50 == pytest.approx(1.0)


def test_storage_bottleneck_recommends_backfill_and_a_lighter_hnsw_build(hash_collection):
    enqueue(hash_collection, [IncomingDocument(f"p{i}", f"queued {i}") for i in range(5)])
    for i in range(5):
        batch(hash_collection, 100 - i, storage=2.0, embedding=0.05)
    ids = {r.id for r in analyse().recommendations}
    assert {"backfill-hashes", "hnsw-build-hashes"} <= ids


def test_apply_records_the_change_and_a_second_one_waits_for_its_evaluation(hash_collection):
    embedding_bound(hash_collection)
    out = StringIO()

    call_command("optimize", "--apply", "--json", stdout=out)

    applied = json.loads(out.getvalue())["applied"]
    assert [(a["collection"], a["setting"], a["before"], a["after"]) for a in applied] == [
        ("hashes", "batch_size", 16, 32)
    ]
    hash_collection.refresh_from_db()
    assert hash_collection.batch_size == 32
    change = OptimizationChange.objects.get()
    assert change.status == OptimizationStatus.APPLIED
    assert change.measurement_before["batches"] == 12
    assert change.measurement_before["worker_seconds_per_document"] > 0
    # The next analysis recommends 64; applying it must wait for the first change's verdict.
    with pytest.raises(OptimizerError, match="already being measured"):
        EmbeddingPipelineOperationsOptimizer().apply(hash_collection, "batch-size-hashes")


@pytest.mark.parametrize(("embedding_after", "status", "batch_size"), [(0.2, "kept", 32), (2.0, "reverted", 16)])
def test_a_change_is_kept_when_it_helps_and_reverted_when_it_does_not(
    hash_collection, settings, embedding_after, status, batch_size
):
    settings.EMBEDPORTAL_OPTIMIZER_EVALUATE_BATCHES = 5
    for i in range(5):
        batch(hash_collection, 300 - i, embedding=1.0)
    rec = Recommendation("batch-size-hashes", "t", "e", "r", "hashes", "batch_size", 16, 32)
    change = apply(hash_collection, rec, "test")
    assert evaluate_pending() == []  # nothing measured after it yet
    for i in range(5):
        batch(hash_collection, -1 - i, embedding=embedding_after)

    (result,) = evaluate_pending()

    change.refresh_from_db()
    hash_collection.refresh_from_db()
    assert (result.status, change.status, hash_collection.batch_size) == (status, status, batch_size)
    assert change.measurement_after["batches"] == 5
    assert change.evaluated_at is not None
    # Concluded once: a second evaluator finds nothing to do.
    assert evaluate_pending() == []
    assert OptimizationChange.objects.filter(pk=change.pk).conclude("kept", {}, "late") == 0


def test_a_revert_leaves_a_setting_someone_changed_since_alone(hash_collection, settings):
    settings.EMBEDPORTAL_OPTIMIZER_EVALUATE_BATCHES = 2
    batch(hash_collection, 300, embedding=0.5)
    apply(hash_collection, Recommendation("batch-size-hashes", "t", "e", "r", "hashes", "batch_size", 16, 32))
    Collection.objects.filter(pk=hash_collection.pk).update(batch_size=100)
    batch(hash_collection, -1, embedding=3.0)
    batch(hash_collection, -2, embedding=3.0)

    (result,) = evaluate_pending()

    hash_collection.refresh_from_db()
    assert result.status == "reverted" and hash_collection.batch_size == 100
    assert "changed by someone else" in OptimizationChange.objects.get().note


def test_apply_refuses_a_collection_without_measurements(hash_collection):
    with pytest.raises(OptimizerError, match="no batch timings"):
        apply(hash_collection, Recommendation("batch-size-hashes", "t", "e", "r", "hashes", "batch_size", 16, 32))
    assert not OptimizationChange.objects.exists()


def test_command_rejects_an_unknown_collection_and_a_bad_window(hash_collection):
    with pytest.raises(CommandError, match="no collection named 'nope'"):
        call_command("optimize", "--collection", "nope")
    for window in ("0", "31622401", "99999999999999999"):  # the last was an OverflowError traceback
        with pytest.raises(
            CommandError, match=r"^--window: a whole number of seconds from 1 to 31622400 \(366 days\)$"
        ):
            call_command("optimize", "--window", window)


def test_prune_deletes_batch_timings_past_the_retention(hash_collection, settings):
    settings.EMBEDPORTAL_BATCH_TIMING_RETENTION_DAYS = 1
    batch(hash_collection, 2 * 86400)
    batch(hash_collection, 60)
    assert history.prune_batches() == 0  # not in the minute history yet
    history.roll_up_batches()
    assert history.prune_batches() == 1
    assert BatchTiming.objects.count() == 1


# --- the API ---------------------------------------------------------------------------------------


def test_api_needs_authentication_and_the_view_permission(hash_collection):
    assert APIClient().get(PERFORMANCE).status_code in (401, 403)
    assert client_with().get(PERFORMANCE).status_code == 403
    api = client_with("view_optimizationchange")
    for url in (PERFORMANCE, PERFORMANCE + "/"):
        response = api.get(url)
        assert response.status_code == 200, url
        assert {"stages", "bottleneck", "recommendations", "slos", "changes"} <= set(response.json())


def test_api_reports_a_collection_and_refuses_an_unknown_one(hash_collection):
    embedding_bound(hash_collection)
    api = client_with("view_optimizationchange")
    body = api.get(PERFORMANCE, {"collection": "hashes"}).json()
    assert body["bottleneck"]["stage"] == "embedding"
    assert body["collections"]["hashes"]["batches"] == 12
    assert "batch-size-hashes" in [r["id"] for r in body["recommendations"]]
    refused = api.get(PERFORMANCE, {"collection": "nope"})
    assert refused.status_code == 400 and "no collection named 'nope'" in refused.content.decode()
    # The last two were 500s: an OverflowError (now - the window) and int("²").
    for window in ("soon", "0", "31622401", "99999999999999999", "²"):
        error = error_of(api.get(PERFORMANCE, {"window": window}), 400)
        assert error["message"] == "window: a whole number of seconds from 1 to 31622400 (366 days)", window
    assert api.get(PERFORMANCE, {"window": "31622400"}).status_code == 200


def test_api_apply_needs_its_own_permission_and_answers_409_while_measuring(hash_collection):
    embedding_bound(hash_collection)
    body = {"collection": "hashes", "recommendation": "batch-size-hashes"}
    viewer = client_with("view_optimizationchange")
    assert viewer.post(PERFORMANCE + "/apply", body, format="json").status_code == 403

    operator = client_with("view_optimizationchange", "apply_optimizationchange")
    created = operator.post(PERFORMANCE + "/apply/", body, format="json")
    assert created.status_code == 201, created.content
    assert (created.json()["setting"], created.json()["after"], created.json()["status"]) == (
        "batch_size",
        32,
        "applied",
    )
    again = operator.post(PERFORMANCE + "/apply", body, format="json")
    assert again.status_code == 409
    unknown = operator.post(PERFORMANCE + "/apply", {"collection": "hashes", "recommendation": "x"}, format="json")
    assert unknown.status_code == 409 and "no recommendation 'x'" in unknown.content.decode()
    assert operator.post(PERFORMANCE + "/apply", {"collection": "nope"}, format="json").status_code == 400


def test_overlapped_stages_make_workers_fully_busy_not_more():
    from pipeline.percentiles import Percentiles
    from pipeline.performance.optimizer.figures import bottleneck

    stages = {s: Percentiles(0.1, 0.2, 0.3, 10) for s in STAGES}
    stages["storage"] = Percentiles(0.4, 1.5, 1.6, 10)
    stages["queue_wait"], stages["total"] = Percentiles(3.0, 4.8, 5.0, 10), Percentiles(0.7, 1.9, 2.7, 10)
    # Storage ran on its own thread 93% of the time while claim, chunking and embedding took 32%.
    found = bottleneck(stages, {"claim": 0.04, "chunking": 0.21, "embedding": 0.07, "storage": 0.93})
    assert found["workers_busy"] == 1.0 and found["stage"] == "workers"
    # Inline storage: the stages take turns and add up.
    found = bottleneck(stages, {"claim": 0.04, "chunking": 0.21, "embedding": 0.07, "storage": 0.5})
    assert found["workers_busy"] == pytest.approx(0.82)
