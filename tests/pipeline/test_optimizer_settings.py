"""The optimizer applies every recommendation that changes a collection: its HNSW build parameters
(the index rebuilt beside the old one, search served throughout), its ef_search (judged by search
p95), and backfill mode (one index build at the end); each from the admin, the API and --apply."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO

import psycopg
import pytest
from django.contrib.auth.models import Permission, User
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from pipeline import backfill, recording, storage
from pipeline.choices import OptimizationStatus
from pipeline.embedding import embed_texts
from pipeline.models import Chunk, Collection, OptimizationChange, SearchLatency
from pipeline.performance.optimizer import (
    EmbeddingPipelineOperationsOptimizer,
    OptimizerError,
    Recommendation,
    analyse,
    apply,
    evaluate_pending,
)
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from pipeline.search import search
from tests.conftest import database_url, wait_for
from tests.pipeline.test_optimizer import PERFORMANCE, batch, saturated_workers
from tests.tools import client_with, hnsw_indexes

# CREATE INDEX CONCURRENTLY cannot run inside the transaction a plain django_db test wraps.
pytestmark = pytest.mark.django_db(transaction=True)

TEXTS = {f"doc-{i}": f"document {i} is about subject {i}, and only that. " * 6 for i in range(8)}
PERFORMANCE_PAGE = "/admin/pipeline/optimizationchange/performance/"


def options(name: str) -> list[str] | None:
    with connection.cursor() as cur:
        cur.execute("SELECT reloptions FROM pg_class WHERE relname = %s AND relkind = 'i'", [name])
        row = cur.fetchone()
    return None if row is None else sorted(row[0] or [])


def load(collection: Collection) -> None:
    enqueue(collection, [IncomingDocument(k, v) for k, v in TEXTS.items()])
    EmbeddingIngestionPipeline().drain()


def finds(collection: Collection, external_id: str) -> bool:
    """Search answers with the document whose chunk is the query (hash vectors are not semantic)."""
    text = Chunk.objects.filter(document__external_id=external_id).order_by("ordinal")[0].text
    hits = search(Collection.objects.get(pk=collection.pk), text, 3)
    return bool(hits) and hits[0].document_id == external_id


def storage_bound(collection: Collection, n: int = 5, storage_seconds: float = 10.0) -> None:
    """Batches whose storage dominates, far slower than any real batch of the tests (whose first
    embedding may include loading the model)."""
    for i in range(n):
        batch(collection, 100 - i, storage=storage_seconds, embedding=0.05)


# --- HNSW build parameters ----------------------------------------------------------------------


def test_every_index_a_collection_gets_is_built_with_its_parameters(hash_collection):
    with pytest.raises(ValidationError) as refused:
        Collection(name="bad", model="local/hash-16", dimensions=16, hnsw_m=24, hnsw_ef_construction=40).full_clean()
    assert list(refused.value.message_dict) == ["hnsw_ef_construction"]
    assert options(hash_collection.index_name) == ["ef_construction=64", "m=16"]  # pgvector's defaults

    load(hash_collection)
    Collection.objects.filter(pk=hash_collection.pk).update(hnsw_m=8, hnsw_ef_construction=20)
    backfill.begin_reembed(Collection.objects.get(pk=hash_collection.pk), chunk_size=120, chunk_overlap=0)
    with CaptureQueriesContext(connection) as queries:
        EmbeddingIngestionPipeline().drain()

    # The re-embed's build of generation 2 used the collection's parameters (no rebuild after it).
    assert Collection.objects.get(pk=hash_collection.pk).generation == 2
    assert options(hash_collection.index_name) == ["ef_construction=20", "m=8"]
    assert not [q for q in queries if q["sql"].startswith("CREATE INDEX CONCURRENTLY")]
    assert finds(hash_collection, "doc-2")


def test_applying_a_lighter_hnsw_build_rebuilds_the_index_while_search_goes_on(hash_collection):
    load(hash_collection)
    storage_bound(hash_collection)
    rec = next(r for r in analyse(hash_collection).recommendations if r.id == "hnsw-build-hashes")
    assert (rec.setting, rec.current, rec.proposed, rec.appliable) == (
        "hnsw",
        {"m": 16, "ef_construction": 64},
        {"m": 12, "ef_construction": 40},
        True,
    )
    with applying_behind_a_writer(hash_collection, rec.id, "test") as outcome:
        # During the build: the old index (old parameters) serves search, the new one is not valid yet.
        assert options(hash_collection.index_name) == ["ef_construction=64", "m=16"]
        assert list(hnsw_indexes(hash_collection)) == [
            hash_collection.index_name,
            f"{hash_collection.index_name}_rebuild",
        ]
        assert finds(hash_collection, "doc-3")
        stored = Collection.objects.get(pk=hash_collection.pk)
        assert (stored.hnsw_m, stored.hnsw_ef_construction) == (12, 40)

    assert "error" not in outcome, outcome
    change = outcome["change"]
    assert (change.setting, change.before, change.after, change.status) == (
        "hnsw",
        {"m": 16, "ef_construction": 64},
        {"m": 12, "ef_construction": 40},
        OptimizationStatus.APPLIED,
    )
    assert change.measurement_before["worker_seconds_per_document"] > 0
    assert options(hash_collection.index_name) == ["ef_construction=40", "m=12"]
    assert list(hnsw_indexes(hash_collection)) == [hash_collection.index_name]
    assert finds(hash_collection, "doc-3") and finds(hash_collection, "doc-6")


def test_a_rebuild_that_fails_sets_the_parameters_back_and_records_why(hash_collection):
    load(hash_collection)
    storage_bound(hash_collection)
    with applying_behind_a_writer(hash_collection, "hnsw-build-hashes") as outcome:
        # As PostgreSQL does to the build when it resolves a deadlock against it (a collection
        # created or dropped meanwhile), or an operator with pg_cancel_backend.
        with connection.cursor() as cur:
            cur.execute(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY%%'"
            )

    assert isinstance(outcome.get("error"), OptimizerError), outcome
    assert "canceling statement due to user request" in str(outcome["error"])
    assert "parameters set back to m=16, ef_construction=64" in str(outcome["error"])
    stored = Collection.objects.get(pk=hash_collection.pk)
    assert (stored.hnsw_m, stored.hnsw_ef_construction) == (16, 64)
    change = OptimizationChange.objects.get()
    assert change.status == OptimizationStatus.REVERTED and "canceling statement" in change.note
    assert list(hnsw_indexes(hash_collection)) == [hash_collection.index_name]  # the invalid build dropped
    assert options(hash_collection.index_name) == ["ef_construction=64", "m=16"]
    assert finds(hash_collection, "doc-2")


@contextmanager
def applying_behind_a_writer(collection: Collection, *apply_args: str) -> Iterator[dict[str, object]]:
    """The optimizer applies a recommendation in a thread while a writer's open transaction holds
    the concurrent build at its first wait, mid-rebuild. Yields once the build waits; on leaving,
    the writer commits and the apply ends, its "change" or "error" in the yielded dict."""
    writer = psycopg.connect(database_url())
    writer.execute("UPDATE pipeline_chunk SET token_count = token_count WHERE false")
    outcome: dict[str, object] = {}

    def apply_in_a_thread() -> None:
        try:
            outcome["change"] = EmbeddingPipelineOperationsOptimizer().apply(collection, *apply_args)
        except Exception as exc:  # noqa: BLE001 -- reported by the tests' assertions
            outcome["error"] = exc
        finally:
            connection.close()

    applying = threading.Thread(target=apply_in_a_thread)
    applying.start()
    try:
        wait_for(lambda: building(collection))
        yield outcome
    finally:
        writer.commit()
        writer.close()
        applying.join()


def building(collection: Collection) -> bool:
    """The rebuild's CREATE INDEX CONCURRENTLY is waiting for the writer's transaction."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s AND wait_event_type = 'Lock'",
            [f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {collection.index_name}_rebuild %"],
        )
        return cur.fetchone()[0] == 1


def test_a_hnsw_change_that_did_not_help_is_reverted_by_rebuilding_with_the_old_parameters(hash_collection, settings):
    settings.EMBEDPORTAL_OPTIMIZER_EVALUATE_BATCHES = 3
    load(hash_collection)
    storage_bound(hash_collection)
    out = StringIO()
    call_command("optimize", "--collection", "hashes", "--apply", "--json", stdout=out)
    assert [(a["setting"], a["after"]) for a in json.loads(out.getvalue())["applied"]] == [
        ("hnsw", {"m": 12, "ef_construction": 40})
    ]
    assert options(hash_collection.index_name) == ["ef_construction=40", "m=12"]
    assert evaluate_pending() == []  # no batch since the new index served
    for i in range(3):
        batch(hash_collection, -1 - i, storage=30.0, embedding=0.05)

    (result,) = evaluate_pending()

    assert result.status == OptimizationStatus.REVERTED
    assert "set back to m=16, ef_construction=64, and the index rebuilt with them" in result.note
    stored = Collection.objects.get(pk=hash_collection.pk)
    assert (stored.hnsw_m, stored.hnsw_ef_construction) == (16, 64)
    assert options(hash_collection.index_name) == ["ef_construction=64", "m=16"]
    assert list(hnsw_indexes(hash_collection)) == [hash_collection.index_name]
    assert finds(hash_collection, "doc-1")


def test_a_concurrent_change_makes_the_apply_lose_its_compare_and_swap(hash_collection):
    load(hash_collection)
    storage_bound(hash_collection)
    rec = next(r for r in analyse(hash_collection).recommendations if r.id == "hnsw-build-hashes")
    Collection.objects.filter(pk=hash_collection.pk).update(hnsw_m=8)  # an operator, meanwhile
    recording.record_search(hash_collection, 0.1)

    with pytest.raises(OptimizerError, match=r"hnsw of 'hashes' is no longer m=16, ef_construction=64; analyse again"):
        apply(hash_collection, rec, "test")

    assert not OptimizationChange.objects.exists()
    assert Collection.objects.get(pk=hash_collection.pk).hnsw_m == 8
    assert options(hash_collection.index_name) == ["ef_construction=64", "m=16"]  # not rebuilt by the apply
    stale = Recommendation("ef-hashes", "t", "e", "r", "hashes", "ef_search", 25, 12)
    with pytest.raises(OptimizerError, match=r"ef_search of 'hashes' is no longer 25; analyse again"):
        apply(hash_collection, stale, "test")


def test_a_rebuild_that_died_is_finished_by_an_idle_worker(hash_collection):
    load(hash_collection)
    Collection.objects.filter(pk=hash_collection.pk).update(hnsw_m=8, hnsw_ef_construction=32)
    # What a process killed after its concurrent build, before the swap, leaves behind.
    stored = Collection.objects.get(pk=hash_collection.pk)
    storage.create_collection_index(stored, name=f"{stored.index_name}_rebuild")
    assert len(hnsw_indexes(hash_collection)) == 2

    assert EmbeddingIngestionPipeline().run_once().claimed == 0  # idle: it repairs

    assert list(hnsw_indexes(hash_collection)) == [hash_collection.index_name]
    assert options(hash_collection.index_name) == ["ef_construction=32", "m=8"]
    assert finds(hash_collection, "doc-4")


def test_an_edit_of_the_parameters_in_the_api_is_built_by_an_idle_worker(hash_collection, admin_client):
    load(hash_collection)
    api = client_with("change_collection")
    patched = api.patch("/api/v1/collections/hashes/", {"hnsw_m": 8, "hnsw_ef_construction": 40}, format="json")
    assert patched.status_code == 200, patched.content
    page = admin_client.get(f"/admin/pipeline/collection/{hash_collection.pk}/change/").content.decode()
    assert "built with m=16, ef_construction=64: an idle worker rebuilds it with m=8, ef_construction=40" in page

    EmbeddingIngestionPipeline().run_once()

    assert options(hash_collection.index_name) == ["ef_construction=40", "m=8"]
    page = admin_client.get(f"/admin/pipeline/collection/{hash_collection.pk}/change/").content.decode()
    assert f"{hash_collection.index_name}, built with m=8, ef_construction=40" in page


# --- ef_search -----------------------------------------------------------------------------------


def ef_search_in(collection: Collection, k: int) -> str:
    """hnsw.ef_search as nearest() left it for its transaction (set_config is local to it)."""
    vector = embed_texts(collection, ["a query"])[0]
    with transaction.atomic(), connection.cursor() as cur:
        storage.nearest(collection, vector, k)
        cur.execute("SHOW hnsw.ef_search")
        return cur.fetchone()[0]


def test_nearest_uses_the_collections_ef_search_but_never_fewer_than_k(hash_collection):
    load(hash_collection)
    assert [ef_search_in(hash_collection, k) for k in (5, 30)] == ["40", "60"]  # unset: max(40, 2k)
    hash_collection.ef_search = 25
    assert [ef_search_in(hash_collection, k) for k in (5, 30)] == ["25", "30"]
    Collection.objects.filter(pk=hash_collection.pk).update(ef_search=25)
    assert finds(hash_collection, "doc-5")


def test_each_search_is_recorded_for_its_collection_keeping_the_latest(hash_collection, settings):
    settings.EMBEDPORTAL_OPTIMIZER_EVALUATE_SEARCHES = 3
    load(hash_collection)
    for i in range(5):
        search(hash_collection, f"query {i}", 2)
    row = SearchLatency.objects.get(collection=hash_collection)
    assert row.searches == 5 and len(row.recent) == 3 and all(s > 0 for s in row.recent)
    recording.record_search(hash_collection, 123.0)
    row.refresh_from_db()
    assert row.searches == 6 and row.recent[-1] == 123.0 and len(row.recent) == 3


@pytest.mark.parametrize(("seconds_after", "status", "ef_search"), [(0.01, "kept", 20), (0.5, "reverted", None)])
def test_an_ef_search_change_is_judged_by_the_searches_after_it(
    hash_collection, settings, seconds_after, status, ef_search
):
    settings.EMBEDPORTAL_OPTIMIZER_EVALUATE_SEARCHES = 4
    for _ in range(4):
        recording.record_search(hash_collection, 0.2)
    recs = analyse(hash_collection).recommendations
    assert "hnsw-ef-search" not in [r.id for r in recs]  # the collection's own figure, not the global advice
    rec = next(r for r in recs if r.id == "hnsw-ef-search-hashes")
    assert (rec.setting, rec.current, rec.proposed, rec.appliable) == ("ef_search", None, 20, True)

    operator = client_with("view_optimizationchange", "apply_optimizationchange")
    created = operator.post(PERFORMANCE + "/apply", {"collection": "hashes", "recommendation": rec.id}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["measurement_before"]["p95_search_seconds"] == 0.2
    assert Collection.objects.get(pk=hash_collection.pk).ef_search == 20
    for _ in range(3):
        recording.record_search(hash_collection, seconds_after)
    assert evaluate_pending() == []  # 3 of the 4 searches it is judged on
    recording.record_search(hash_collection, seconds_after)

    (result,) = evaluate_pending()

    assert result.status == status
    assert result.note.startswith(f"search p95 seconds 0.2000 -> {seconds_after:.4f}")
    change = OptimizationChange.objects.get()
    assert change.measurement_after["searches"] == 4
    assert Collection.objects.get(pk=hash_collection.pk).ef_search == ef_search


# --- backfill mode -------------------------------------------------------------------------------


def test_applying_backfill_mode_from_the_admin_builds_the_index_once_at_the_end(
    hash_collection, admin_client, monkeypatch
):
    enqueue(hash_collection, [IncomingDocument(k, v) for k, v in list(TEXTS.items())[:2]])
    EmbeddingIngestionPipeline().drain()
    enqueue(hash_collection, [IncomingDocument(f"more-{i}", f"queued text {i}. " * 20) for i in range(10)])
    storage_bound(hash_collection, storage_seconds=1000.0)  # no real batch is that slow: it helps
    page = admin_client.get(PERFORMANCE_PAGE, {"collection": "hashes"}).content.decode()
    assert 'name="recommendation" value="backfill-hashes"' in page

    response = admin_client.post(PERFORMANCE_PAGE, {"collection": "hashes", "recommendation": "backfill-hashes"})

    assert response.status_code == 302
    change = OptimizationChange.objects.get()
    assert (change.setting, change.before, change.after) == ("backfill", False, True)
    stored = Collection.objects.get(pk=hash_collection.pk)
    assert stored.building_generation == stored.generation == 1
    assert list(hnsw_indexes(hash_collection)) == []
    assert finds(hash_collection, "doc-0")  # by an exact scan meanwhile
    assert evaluate_pending() == []  # judged once its index is built

    builds = []
    real_build = storage.create_collection_index

    def build(collection: Collection, generation: int | None = None, name: str | None = None) -> None:
        builds.append((collection.pk, generation, name, backfill.outstanding(collection.pk)))
        real_build(collection, generation, name)

    monkeypatch.setattr(storage, "create_collection_index", build)
    EmbeddingIngestionPipeline(claim_batch=3).drain()

    # One build, of the generation searched, once no document was left to write.
    assert builds == [(hash_collection.pk, 1, hash_collection.index_name, False)]
    assert options(hash_collection.index_name) == ["ef_construction=64", "m=16"]
    assert list(hnsw_indexes(hash_collection)) == [hash_collection.index_name]
    assert Collection.objects.get(pk=hash_collection.pk).building_generation is None
    (result,) = evaluate_pending()
    assert result.status == OptimizationStatus.KEPT
    assert OptimizationChange.objects.get().measurement_after["batches"] == 4


def test_a_backfill_that_did_not_help_is_recorded_as_such_with_nothing_undone(hash_collection):
    enqueue(hash_collection, [IncomingDocument(k, v) for k, v in TEXTS.items()])
    batch(hash_collection, 100, claim=0.0, chunking=0.0, embedding=0.0, storage=0.0)  # nothing beats 0 s
    change = apply(hash_collection, Recommendation("backfill-hashes", "t", "e", "r", "hashes", "backfill", False, True))
    with pytest.raises(OptimizerError, match="already being measured"):
        apply(hash_collection, Recommendation("batch-size-hashes", "t", "e", "r", "hashes", "batch_size", 16, 32))
    EmbeddingIngestionPipeline().drain()

    (result,) = evaluate_pending()

    assert result.change == change.pk and result.status == OptimizationStatus.REVERTED
    assert "nothing to undo: the backfill built its index once at the end" in result.note
    assert list(hnsw_indexes(hash_collection)) == [hash_collection.index_name]
    assert finds(hash_collection, "doc-7")


# --- permissions ---------------------------------------------------------------------------------


def test_applying_from_the_admin_needs_the_apply_permission(hash_collection, client):
    load(hash_collection)
    storage_bound(hash_collection)
    user = User.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_optimizationchange", "access_all_collections"])
    )
    client.force_login(user)
    page = client.get(PERFORMANCE_PAGE).content.decode()
    assert "needs the apply permission" in page
    body = {"collection": "hashes", "recommendation": "hnsw-build-hashes"}
    assert client.post(PERFORMANCE_PAGE, body).status_code == 403
    assert not OptimizationChange.objects.exists()
    assert options(hash_collection.index_name) == ["ef_construction=64", "m=16"]

    user.user_permissions.add(Permission.objects.get(codename="apply_optimizationchange"))
    assert client.post(PERFORMANCE_PAGE, body).status_code == 302
    assert OptimizationChange.objects.get().setting == "hnsw"
    assert options(hash_collection.index_name) == ["ef_construction=40", "m=12"]


def test_deployment_settings_stay_advice_and_say_so(hash_collection, admin_client):
    saturated_workers(hash_collection)  # saturated workers with a queue: more workers, a deployment setting
    rec = next(r for r in analyse().recommendations if r.id == "workers")
    assert not rec.appliable and "the optimizer does not" in rec.reason
    page = admin_client.get(PERFORMANCE_PAGE).content.decode()
    row = page[page.index('id="rec-workers"') :].split("</tr>")[0]
    assert "advice: the optimizer does not apply it" in row and "Apply</button>" not in row
    with pytest.raises(OptimizerError, match="changes no setting of collection"):
        apply(hash_collection, rec)
