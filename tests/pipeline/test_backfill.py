"""Backfill mode: first loads and re-embeds write without the HNSW index, build it once, and switch
search atomically; a re-embed serves the old generation (and the old model) until then."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from pipeline import backfill
from pipeline import search as search_module
from pipeline.choices import DocumentStatus
from pipeline.models import Chunk, Collection, Document, GoldenQuery
from pipeline.models.document import DocumentQuerySet
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.quality import evaluate
from pipeline.queue import IncomingDocument, enqueue
from pipeline.search import search
from tests.conftest import wait_for
from tests.tools import client_with, hnsw_indexes, in_thread, lock_waiters, paused_after

pytestmark = pytest.mark.django_db(transaction=True)

# Long documents: with the fixture's 200-character chunks each has several; the re-embed below
# cuts them at 60, so old and new hits are told apart by their text.
TEXTS = {f"doc-{i}": f"document {i} talks about topic {i} at length. " * 12 for i in range(12)}


def load(collection: Collection) -> None:
    enqueue(collection, [IncomingDocument(k, v) for k, v in TEXTS.items()])
    EmbeddingIngestionPipeline().drain()


def first_chunk(external_id: str) -> str:
    """A stored chunk's text: hash vectors are not semantic, so queries repeat a chunk exactly."""
    return Chunk.objects.filter(document__external_id=external_id).order_by("generation", "ordinal")[0].text


def top_texts(collection: Collection, query: str) -> list[str]:
    return [h.text for h in search(Collection.objects.get(pk=collection.pk), query, 3)]


def test_a_first_load_begins_before_the_workers_are_woken(hash_collection, settings, monkeypatch):
    # The workers were woken first: a batch claimed in between was no bulk load's (BatchTiming.bulk), and
    # one stored in between kept the load from beginning (a collection with chunks has no first load).
    settings.EMBEDPORTAL_BACKFILL_MIN_DOCUMENTS = 10
    woken = []
    loading = Collection.objects.filter(pk=hash_collection.pk).values_list("building_generation", flat=True)
    monkeypatch.setattr("pipeline.queue.kick_workers", lambda: woken.append(loading.get()))
    enqueue(hash_collection, [IncomingDocument(k, v) for k, v in TEXTS.items()])
    assert woken == [1]


def test_first_load_is_written_without_the_index_and_indexes_once_at_the_end(hash_collection, settings):
    settings.EMBEDPORTAL_BACKFILL_MIN_DOCUMENTS = 10
    assert set(hnsw_indexes(hash_collection)) == {hash_collection.index_name}  # created with the collection

    enqueue(hash_collection, [IncomingDocument(k, v) for k, v in TEXTS.items()])

    stored = Collection.objects.get(pk=hash_collection.pk)
    assert stored.building_generation == stored.generation == 1
    assert hnsw_indexes(hash_collection) == {}
    EmbeddingIngestionPipeline(claim_batch=4).run_once()
    assert hnsw_indexes(hash_collection) == {}, "no index while the first load is written"
    assert search(stored, TEXTS["doc-1"], 1)  # searchable meanwhile, by an exact scan

    EmbeddingIngestionPipeline().drain()

    stored.refresh_from_db()
    assert stored.building_generation is None and stored.generation == 1
    [(name, definition)] = hnsw_indexes(hash_collection).items()
    assert name == hash_collection.index_name
    assert "USING hnsw" in definition and f"collection_id = {hash_collection.pk}" in definition
    assert "generation = 1" in definition
    hit = search(stored, first_chunk("doc-3"), 1)[0]
    assert (hit.document_id, hit.text) == ("doc-3", first_chunk("doc-3"))


def test_small_enqueue_into_an_empty_collection_keeps_the_index(hash_collection, settings):
    settings.EMBEDPORTAL_BACKFILL_MIN_DOCUMENTS = 100
    enqueue(hash_collection, [IncomingDocument(k, v) for k, v in TEXTS.items()])
    assert Collection.objects.get(pk=hash_collection.pk).building_generation is None
    assert set(hnsw_indexes(hash_collection)) == {hash_collection.index_name}


def test_a_first_load_posted_in_small_requests_is_a_first_load(api, hash_collection, settings):
    # An API client posts a corpus a few documents a request: the load begins once the collection's
    # queued documents reach the threshold, before any is stored, as one large call would.
    settings.EMBEDPORTAL_BACKFILL_MIN_DOCUMENTS = 10
    docs = [IncomingDocument(k, v) for k, v in TEXTS.items()]
    url = f"/api/v1/collections/{hash_collection.name}/documents/"
    loading = Collection.objects.filter(pk=hash_collection.pk).values_list("building_generation", flat=True)
    for start in (0, 4):
        body = [{"id": d.external_id, "text": d.text} for d in docs[start : start + 4]]
        assert api.post(url, body, format="json").status_code == 202
        assert loading.get() is None
    body = [{"id": d.external_id, "text": d.text} for d in docs[8:]]
    assert api.post(url, body, format="json").status_code == 202
    assert loading.get() == 1
    assert hnsw_indexes(hash_collection) == {}

    EmbeddingIngestionPipeline().drain()
    assert loading.get() is None and set(hnsw_indexes(hash_collection)) == {hash_collection.index_name}


def test_small_requests_into_a_collection_with_stored_chunks_make_no_first_load(hash_collection, settings):
    settings.EMBEDPORTAL_BACKFILL_MIN_DOCUMENTS = 10
    docs = [IncomingDocument(k, v) for k, v in TEXTS.items()]
    enqueue(hash_collection, docs[:2])
    EmbeddingIngestionPipeline().drain()
    for start in range(2, 12, 5):
        enqueue(hash_collection, docs[start : start + 5])
    assert Collection.objects.get(pk=hash_collection.pk).building_generation is None
    assert set(hnsw_indexes(hash_collection)) == {hash_collection.index_name}


def test_reembed_with_a_new_model_serves_the_old_vectors_until_the_switch(hash_collection):
    load(hash_collection)
    old_chunks = set(Chunk.objects.filter(collection=hash_collection).values_list("text", flat=True))
    query = first_chunk("doc-5")
    before = top_texts(hash_collection, query)
    assert before[0] == query and query in old_chunks

    requeued = backfill.begin_reembed(
        hash_collection, model="local/hash-32", dimensions=32, chunk_size=60, chunk_overlap=0
    )

    assert requeued == len(TEXTS)
    stored = Collection.objects.get(pk=hash_collection.pk)
    assert (stored.model, stored.dimensions, stored.generation, stored.building_generation) == (
        "local/hash-32",
        32,
        1,
        2,
    )
    assert stored.serving["model"] == "local/hash-16" and stored.serving["dimensions"] == 16
    # Half-way: new vectors exist beside the old ones, search still answers from the old generation.
    EmbeddingIngestionPipeline(claim_batch=4).run_once()
    assert Chunk.objects.filter(collection=hash_collection, generation=2).exists()
    assert top_texts(hash_collection, query) == before
    assert set(hnsw_indexes(hash_collection)) == {hash_collection.index_name}
    assert "vector(16)" in hnsw_indexes(hash_collection)[hash_collection.index_name]

    EmbeddingIngestionPipeline().drain()

    stored.refresh_from_db()
    assert (stored.generation, stored.building_generation, stored.serving) == (2, None, None)
    after = top_texts(hash_collection, query)
    assert after != before and all(len(text) <= 60 for text in after)
    [(name, definition)] = hnsw_indexes(hash_collection).items()
    assert name == hash_collection.index_name
    assert "vector(32)" in definition and "generation = 2" in definition
    assert set(Chunk.objects.filter(collection=hash_collection).values_list("generation", flat=True)) == {2}
    assert {len(e) for e in Chunk.objects.filter(collection=hash_collection).values_list("embedding", flat=True)} == {
        32
    }


def test_reembed_killed_midway_resumes_and_finishes_without_losing_the_old_vectors(hash_collection):
    load(hash_collection)
    query = first_chunk("doc-2")
    before = top_texts(hash_collection, query)
    old_rows = Chunk.objects.filter(collection=hash_collection, generation=1).count()
    backfill.begin_reembed(hash_collection, chunk_size=60, chunk_overlap=0)

    # A worker claims a batch and dies: its documents stay leased; nothing is switched.
    dead = Document.objects.claim("dead-worker", 4, timezone.timedelta(seconds=30))
    assert dead
    EmbeddingIngestionPipeline().drain()
    assert Collection.objects.get(pk=hash_collection.pk).building_generation == 2
    assert top_texts(hash_collection, query) == before
    assert Chunk.objects.filter(collection=hash_collection, generation=1).count() == old_rows

    # Its leases expire; the next worker embeds them, and the last batch builds the index. The
    # build dies with its worker the first time (rolled back): the old generation still serves.
    Document.objects.filter(lease_owner="dead-worker").update(lease_expires_at=timezone.now())
    with pytest.raises(RuntimeError), transaction.atomic():
        assert EmbeddingIngestionPipeline(worker_id="killed").drain().embedded == len(dead)
        raise RuntimeError("killed")
    assert Collection.objects.get(pk=hash_collection.pk).building_generation == 2
    assert top_texts(hash_collection, query) == before

    Document.objects.filter(lease_owner="dead-worker").update(lease_expires_at=timezone.now())
    EmbeddingIngestionPipeline().drain()

    stored = Collection.objects.get(pk=hash_collection.pk)
    assert (stored.generation, stored.building_generation) == (2, None)
    assert Document.objects.filter(collection=hash_collection, status=DocumentStatus.EMBEDDED).count() == len(TEXTS)
    assert top_texts(hash_collection, query) != before
    assert set(hnsw_indexes(hash_collection)) == {hash_collection.index_name}


def test_index_build_killed_after_the_last_batch_is_redone_by_an_idle_worker(hash_collection):
    load(hash_collection)
    backfill.begin_reembed(hash_collection, chunk_size=60, chunk_overlap=0)
    EmbeddingIngestionPipeline().drain()
    assert Collection.objects.get(pk=hash_collection.pk).generation == 2
    # Another re-embed, whose build is interrupted: it rolls back as a whole.
    backfill.begin_reembed(hash_collection, chunk_size=80, chunk_overlap=0)
    with connection.cursor() as cur:
        cur.execute("UPDATE pipeline_document SET status = 'embedded' WHERE collection_id = %s", [hash_collection.pk])
    with pytest.raises(RuntimeError), transaction.atomic():
        assert backfill.finish(hash_collection.pk)
        raise RuntimeError("killed during the build")
    stored = Collection.objects.get(pk=hash_collection.pk)
    assert (stored.generation, stored.building_generation) == (2, 3)
    assert set(hnsw_indexes(hash_collection)) == {hash_collection.index_name}

    assert EmbeddingIngestionPipeline().run_once().claimed == 0  # idle: finishes it

    stored.refresh_from_db()
    assert (stored.generation, stored.building_generation) == (3, None)
    [(name, definition)] = hnsw_indexes(hash_collection).items()
    assert name == hash_collection.index_name and "generation = 3" in definition


def reembed_while_paused_in(monkeypatch, collection: Collection, name: str, work) -> tuple:
    """Run `work` until DocumentQuerySet.<name> has returned, holding its documents' locks; start a
    re-embed, which waits for them; let `work` go on. (work's result, documents the re-embed requeued)."""
    reached, go = paused_after(monkeypatch, DocumentQuerySet, name)
    first, done = in_thread(work)
    assert reached.wait(30)
    second, requeued = in_thread(lambda: backfill.begin_reembed(collection, chunk_size=60, chunk_overlap=0))
    wait_for(lock_waiters)  # the re-embed waits for the documents `work` holds
    go.set()
    for thread in (first, second):
        thread.join(30)
    monkeypatch.undo()
    assert "error" not in done and "error" not in requeued, (done, requeued)
    return done["result"], requeued["result"]


def test_a_reembed_started_while_a_worker_stores_waits_for_it_instead_of_deadlocking(hash_collection, monkeypatch):
    # The store locks its documents (mark_embedded), then COPYs chunks whose foreign key to the
    # collection takes a KEY SHARE lock on its row. A re-embed holding that row FOR UPDATE while it
    # waits for the documents deadlocked with it (a 409 for the API, a failed batch for the worker).
    enqueue(hash_collection, [IncomingDocument(k, v) for k, v in list(TEXTS.items())[:3]])
    report, requeued = reembed_while_paused_in(
        monkeypatch, hash_collection, "mark_embedded", lambda: EmbeddingIngestionPipeline().run_once()
    )
    assert (report.embedded, report.failed, requeued) == (3, 0, 3)
    EmbeddingIngestionPipeline().drain()
    stored = Collection.objects.get(pk=hash_collection.pk)
    assert (stored.generation, stored.building_generation, stored.chunk_size) == (2, None, 60)


def test_a_reembed_started_while_a_worker_claims_waits_for_the_claim_instead_of_deadlocking(
    hash_collection, monkeypatch
):
    # A claim locks its documents, then stamps the collection's last_claimed_at; a re-embed holds the
    # collection's row while it requeues those documents: the stamp waited for the re-embed, the
    # re-embed for the documents.
    enqueue(hash_collection, [IncomingDocument(k, v) for k, v in list(TEXTS.items())[:3]])
    # A dead worker's expired leases: the claim takes them over, the re-embed requeues them.
    expired = timezone.now() - timedelta(minutes=1)
    Document.objects.update(status=DocumentStatus.PROCESSING, lease_owner="dead:1", lease_expires_at=expired)
    claimed, requeued = reembed_while_paused_in(
        monkeypatch, hash_collection, "_lock_due", lambda: Document.objects.claim("w", 10, timedelta(minutes=5))
    )
    # Both ended. The claim reads its documents back after its commit, when the re-embed may already have
    # requeued them: then it returns none and its worker does nothing with them (a fresh-clone CI run saw 0).
    assert requeued == 3 and len(claimed) in (0, 3)
    EmbeddingIngestionPipeline().drain()
    assert Collection.objects.get(pk=hash_collection.pk).generation == 2


def test_reembed_refuses_a_setting_it_cannot_change(hash_collection):
    with pytest.raises(ValueError, match="name"):
        backfill.begin_reembed(hash_collection, name="other")
    assert Collection.objects.get(pk=hash_collection.pk).building_generation is None


def reembed_api(collection: Collection, body: dict | None = None):
    return client_with("reembed_collection").post(
        f"/api/v1/collections/{collection.name}/reembed/", body or {}, format="json"
    )


def test_api_changes_the_model_with_a_zero_downtime_reembed(hash_collection):
    load(hash_collection)
    query = first_chunk("doc-1")
    before = top_texts(hash_collection, query)

    response = reembed_api(hash_collection, {"model": "local/hash-32"})

    assert response.status_code == 202, response.content
    assert response.json() == {"collection": "hashes", "requeued": len(TEXTS)}
    stored = Collection.objects.get(pk=hash_collection.pk)
    assert (stored.model, stored.dimensions, stored.building_generation) == ("local/hash-32", 32, 2)
    assert top_texts(hash_collection, query) == before  # the old model answers the query meanwhile
    EmbeddingIngestionPipeline().drain()
    stored.refresh_from_db()
    assert (stored.generation, stored.building_generation, stored.serving) == (2, None, None)
    assert "vector(32)" in hnsw_indexes(hash_collection)[hash_collection.index_name]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "renamed"}, "name: unknown field; known: api_base"),  # the fields a re-embed can change
        ({"model": "local/nope"}, "unknown local model"),
        ({"model": "local/hash-32", "dimensions": 16}, "has 32 dimensions"),
        ({"chunk_size": 100, "chunk_overlap": 200}, "overlap"),
    ],
)
def test_api_refuses_a_reembed_it_cannot_do_and_changes_nothing(hash_collection, body, message):
    response = reembed_api(hash_collection, body)

    assert response.status_code == 400 and message in response.content.decode(), response.content
    stored = Collection.objects.get(pk=hash_collection.pk)
    assert (stored.model, stored.building_generation, stored.serving) == ("local/hash-16", None, None)


# Short pages: one chunk each, so a query repeating a page finds it first (the fake provider's vectors hash the text).
PAGES = {f"page-{i}": f"page {i} is about subject {i}." for i in range(20)}


def test_reembed_whose_every_document_fails_keeps_the_old_generation_and_says_why(
    fake_collection, monkeypatch, caplog, admin_client
):
    enqueue(fake_collection, [IncomingDocument(k, v) for k, v in PAGES.items()])
    EmbeddingIngestionPipeline().drain()
    before = top_texts(fake_collection, PAGES["page-3"])
    old_rows = Chunk.objects.filter(collection=fake_collection, generation=1).count()
    assert before[0] == PAGES["page-3"] and old_rows == len(PAGES)
    monkeypatch.delenv("NEW_PROVIDER_KEY", raising=False)  # unset in the workers

    assert reembed_api(fake_collection, {"api_key_env": "NEW_PROVIDER_KEY"}).status_code == 202
    with caplog.at_level(logging.WARNING, logger="pipeline.backfill"):
        EmbeddingIngestionPipeline().drain()
        EmbeddingIngestionPipeline().run_once()  # idle: finish_ready tries again, warns no more

    documents = Document.objects.filter(collection=fake_collection)
    assert documents.filter(status=DocumentStatus.FAILED).count() == len(PAGES)
    stored = Collection.objects.get(pk=fake_collection.pk)
    assert (stored.generation, stored.building_generation) == (1, 2)
    assert Chunk.objects.filter(collection=fake_collection, generation=1).count() == old_rows
    assert top_texts(fake_collection, PAGES["page-3"]) == before
    why = "generation 2 is not searched: 20 of its documents failed and 0 were embedded"
    assert [r.levelno for r in caplog.records if why in r.getMessage()] == [logging.WARNING]
    page = admin_client.get(f"/admin/pipeline/collection/{fake_collection.pk}/change/").content.decode()
    assert why in page
    shown = client_with("view_collection").get(f"/api/v1/collections/{fake_collection.name}/").json()
    assert (shown["generation"], shown["building_generation"]) == (1, 2) and shown["held_back"].startswith(why)

    # The key set where the workers run and the failed documents requeued: the re-embed completes.
    monkeypatch.setenv("NEW_PROVIDER_KEY", "sk-new-secret-654321")
    documents.requeue()
    EmbeddingIngestionPipeline().drain()

    stored.refresh_from_db()
    assert (stored.generation, stored.building_generation, stored.api_key_env) == (2, None, "NEW_PROVIDER_KEY")
    shown = client_with("view_collection").get(f"/api/v1/collections/{fake_collection.name}/").json()
    assert (shown["generation"], shown["building_generation"], shown["held_back"]) == (2, None, None)
    assert top_texts(fake_collection, PAGES["page-3"])[0] == PAGES["page-3"]


def test_reembed_with_a_few_failed_documents_switches_without_them(fake_collection, monkeypatch):
    enqueue(fake_collection, [IncomingDocument(k, v) for k, v in PAGES.items()])
    EmbeddingIngestionPipeline().drain()
    backfill.begin_reembed(fake_collection)
    # One document failed for good (its last attempt), the others embedded: the documented switch.
    Document.objects.filter(collection=fake_collection, external_id="page-0").update(status=DocumentStatus.FAILED)
    EmbeddingIngestionPipeline().drain()

    stored = Collection.objects.get(pk=fake_collection.pk)
    assert (stored.generation, stored.building_generation) == (2, None)
    assert Chunk.objects.filter(collection=fake_collection).count() == len(PAGES) - 1


def test_api_refuses_dimensions_a_provider_model_does_not_produce_and_changes_nothing(fake_collection):
    response = reembed_api(fake_collection, {"dimensions": 16})

    assert response.status_code == 400, response.content
    assert "openai/fake-embedder has 8 dimensions, not 16" in response.content.decode()
    stored = Collection.objects.get(pk=fake_collection.pk)
    assert (stored.dimensions, stored.building_generation, stored.serving) == (8, None, None)


def test_saving_a_collection_loaded_before_the_switch_keeps_the_switched_generation(hash_collection):
    load(hash_collection)
    backfill.begin_reembed(hash_collection, chunk_size=60, chunk_overlap=0)
    loaded = Collection.objects.get(pk=hash_collection.pk)
    assert (loaded.generation, loaded.building_generation) == (1, 2) and loaded.serving

    EmbeddingIngestionPipeline().drain()  # switches to generation 2 and deletes generation 1
    loaded.keyword_weight = 0.3
    loaded.save()

    stored = Collection.objects.get(pk=hash_collection.pk)
    assert (stored.generation, stored.building_generation, stored.serving, stored.keyword_weight) == (
        2,
        None,
        None,
        0.3,
    )
    assert (loaded.generation, loaded.building_generation, loaded.serving) == (2, None, None)
    assert top_texts(hash_collection, first_chunk("doc-4"))[0] == first_chunk("doc-4")


def test_settings_patch_during_a_switch_does_not_undo_it(hash_collection, monkeypatch):
    load(hash_collection)
    backfill.begin_reembed(hash_collection, chunk_size=60, chunk_overlap=0)
    view_save = Collection.save

    def switched_while_saving(collection: Collection, **kwargs) -> None:
        # The PATCH loaded the collection before the switch; the re-embed completes during its save.
        EmbeddingIngestionPipeline().drain()
        view_save(collection, **kwargs)

    monkeypatch.setattr(Collection, "save", switched_while_saving)
    response = client_with("change_collection").patch(
        f"/api/v1/collections/{hash_collection.name}/", {"keyword_weight": 0.3}, format="json"
    )

    assert response.status_code == 200, response.content
    stored = Collection.objects.get(pk=hash_collection.pk)
    assert (stored.generation, stored.building_generation, stored.serving, stored.keyword_weight) == (
        2,
        None,
        None,
        0.3,
    )
    assert top_texts(hash_collection, first_chunk("doc-4"))[0] == first_chunk("doc-4")


def test_search_in_flight_at_the_switch_answers_from_the_new_generation(hash_collection, monkeypatch):
    load(hash_collection)
    backfill.begin_reembed(hash_collection, chunk_size=60, chunk_overlap=0)
    embed = search_module.embed_texts

    def switch_then_embed(collection: Collection, texts: list[str], timeout: float | None = None) -> list:
        # The request read the collection before the switch; the re-embed completes while it embeds the query.
        if Collection.objects.get(pk=collection.pk).building_generation is not None:
            EmbeddingIngestionPipeline().drain()
        return embed(collection, texts, timeout)

    monkeypatch.setattr(search_module, "embed_texts", switch_then_embed)
    query = TEXTS["doc-6"][:60].strip()
    response = client_with("view_chunk").post(
        f"/api/v1/collections/{hash_collection.name}/search/", {"query": query, "k": 3}, format="json"
    )

    assert response.status_code == 200, response.content
    assert Collection.objects.get(pk=hash_collection.pk).generation == 2
    results = response.json()["results"]
    assert results and all(len(hit["text"]) <= 60 for hit in results)  # generation 2's chunks


def test_evaluation_that_read_the_collection_before_the_switch_stores_the_new_generations_figures(hash_collection):
    load(hash_collection)
    backfill.begin_reembed(hash_collection, chunk_size=60, chunk_overlap=0)
    read = Collection.objects.get(pk=hash_collection.pk)
    EmbeddingIngestionPipeline().drain()  # switches to generation 2 and deletes generation 1
    for external_id in ("doc-1", "doc-7"):
        GoldenQuery.objects.create(collection=read, query=first_chunk(external_id), expected_document_id=external_id)

    run = evaluate(read)

    assert run.recall_at_5 == 1.0 and run.configuration["generation"] == 2
