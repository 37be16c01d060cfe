"""The collections API: create (with the collection's HNSW index), update, delete, permissions,
and extra_params reaching the provider through LiteLLM."""

from __future__ import annotations

import copy
import importlib
import json
from io import StringIO
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.db import connection
from django.forms.models import model_to_dict
from rest_framework.exceptions import NotFound
from rest_framework.test import APIClient

from pipeline import recording
from pipeline.api.views import CollectionViewSet
from pipeline.choices import DocumentStatus
from pipeline.collections import create_collection
from pipeline.models import Chunk, Collection, Document
from pipeline.models.collection import NAME_CASE
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from testing.benchmarks import search as search_benchmark
from tests.tools import client_with, concurrently, error_of, hnsw_indexes, staff

pytestmark = pytest.mark.django_db

COLLECTIONS = "/api/v1/collections/"
UNREACHABLE = "http://127.0.0.1:9/v1"  # nothing listens: a body that probes the provider gets no answer


def send(api: APIClient, method: str, url: str, body: Any = None):
    return getattr(api, method)(url, data=None if body is None else json.dumps(body), content_type="application/json")


def assert_collection_index(collection: Collection, dims: int) -> None:
    indexdef = hnsw_indexes()[f"pipeline_chunk_hnsw_{collection.pk}"]
    assert f"USING hnsw (((embedding)::vector({dims})) vector_cosine_ops)" in indexdef, indexdef
    assert f"WITH (m='{collection.hnsw_m}', ef_construction='{collection.hnsw_ef_construction}')" in indexdef
    # The generation searched (pipeline.backfill): a re-embed writes the next one beside it.
    assert indexdef.endswith(f"WHERE ((collection_id = {collection.pk}) AND (generation = {collection.generation}))"), (
        indexdef
    )


def snapshot() -> tuple:
    """What a refused request must leave exactly as it was."""
    return (
        list(Collection.objects.order_by("pk").values()),
        hnsw_indexes(),
        Document.objects.count(),
        Chunk.objects.count(),
    )


def test_create_through_the_api_makes_the_collection_and_its_partial_hnsw_index(hash_collection):
    before = hnsw_indexes()
    api = client_with("add_collection")
    body = {"name": "notes", "model": "local/hash-32", "chunk_unit": "characters", "chunk_size": 120}
    response = send(api, "post", COLLECTIONS, body)

    assert response.status_code == 201, response.content
    created = Collection.objects.get(name="notes")
    assert response.json() | {"created_at": None, "updated_at": None} == {
        "name": "notes",
        "team": None,  # an operator's, none named: the platform's own
        "model": "local/hash-32",
        "api_base": "",
        "api_key_env": "",
        "extra_params": {},
        "dimensions": 32,  # resolved from the local model
        "chunking_strategy": "recursive",
        "chunk_unit": "characters",
        "chunk_size": 120,
        "chunk_overlap": 32,
        "contextual_chunks": True,  # on for new collections
        "batch_size": 64,
        "provider_concurrency": 1,
        "freshness_sla": "01:00:00",
        "monthly_budget_usd": None,
        "requests_per_minute": None,
        "tokens_per_minute": None,
        "paused": False,
        "hnsw_m": 16,  # pgvector's defaults, and the index is built with them
        "hnsw_ef_construction": 64,
        "ef_search": None,
        "search_mode": "hybrid",  # new collections: the best mode measured (docs/search.md)
        "keyword_weight": 0.5,
        "fusion": "rrf",  # new collections: reciprocal-rank fusion, the better one measured
        "rerank_model": "",  # no reranking unless named
        "rerank_api_base": "",
        "rerank_api_key_env": "",
        "retrieval_target": 0.9,
        "held_back": None,
        "generation": 1,
        "building_generation": None,
        "created_at": None,
        "updated_at": None,
    }
    assert (created.dimensions, created.chunk_size) == (32, 120)
    assert created.index_name == f"pipeline_chunk_hnsw_{created.pk}"
    assert set(hnsw_indexes()) == set(before) | {created.index_name}
    assert_collection_index(created, 32)
    assert_collection_index(hash_collection, 16)  # the other collection's index is its own


# (name, body, field the 400 must name); hash_collection ("hashes") already exists.
INVALID_CREATES = [
    ("duplicate name", {"name": "hashes", "model": "local/hash-16"}, "name"),
    ("name not a slug", {"name": "my notes", "model": "local/hash-16"}, "name"),
    ("name missing", {"model": "local/hash-16"}, "name"),
    (
        "overlap equals size",
        {"name": "n", "model": "local/hash-16", "chunk_size": 64, "chunk_overlap": 64},
        "chunk_overlap",
    ),
    (
        "overlap above size",
        {"name": "n", "model": "local/hash-16", "chunk_size": 64, "chunk_overlap": 65},
        "chunk_overlap",
    ),
    (
        "chunk_size too small",
        {"name": "n", "model": "local/hash-16", "chunk_size": 4, "chunk_overlap": 0},
        "chunk_size",
    ),
    ("unknown local model", {"name": "n", "model": "local/no-such-model"}, "model"),
    ("dimensions not the model's", {"name": "n", "model": "local/hash-16", "dimensions": 17}, "dimensions"),
    ("dimensions above 16000", {"name": "n", "model": "openai/x", "dimensions": 16001}, "dimensions"),
    (
        "unknown chunking strategy",
        {"name": "n", "model": "local/hash-16", "chunking_strategy": "magic"},
        "chunking_strategy",
    ),
    ("unknown chunk unit", {"name": "n", "model": "local/hash-16", "chunk_unit": "bytes"}, "chunk_unit"),
    ("batch_size zero", {"name": "n", "model": "local/hash-16", "batch_size": 0}, "batch_size"),
    ("hnsw_m below pgvector's 2", {"name": "n", "model": "local/hash-16", "hnsw_m": 1}, "hnsw_m"),
    ("hnsw_m above pgvector's 100", {"name": "n", "model": "local/hash-16", "hnsw_m": 101}, "hnsw_m"),
    (
        "hnsw_ef_construction above pgvector's 1000",
        {"name": "n", "model": "local/hash-16", "hnsw_ef_construction": 1001},
        "hnsw_ef_construction",
    ),
    (
        "hnsw_ef_construction below 2 * hnsw_m",
        {"name": "n", "model": "local/hash-16", "hnsw_m": 32, "hnsw_ef_construction": 40},
        "hnsw_ef_construction",
    ),
    ("ef_search zero", {"name": "n", "model": "local/hash-16", "ef_search": 0}, "ef_search"),
    ("ef_search above pgvector's 1000", {"name": "n", "model": "local/hash-16", "ef_search": 1001}, "ef_search"),
    ("api_base not a URL", {"name": "n", "model": "openai/x", "dimensions": 8, "api_base": "not a url"}, "api_base"),
    (
        "a key instead of a variable name",
        {"name": "n", "model": "local/hash-16", "api_key_env": "sk-abc-123"},
        "api_key_env",
    ),
    # extra_params: each of these was accepted (or a 500) before the serializer checked them.
    ("extra_params a list", {"name": "n", "model": "local/hash-16", "extra_params": [1, 2]}, "extra_params"),
    ("extra_params a string", {"name": "n", "model": "local/hash-16", "extra_params": "x"}, "extra_params"),
    (
        "extra_params.dimensions not an integer",
        {"name": "n", "model": "openai/x", "api_base": UNREACHABLE, "extra_params": {"dimensions": "abc"}},
        "extra_params",
    ),
    (
        "extra_params.dimensions differs from dimensions",
        {
            "name": "n",
            "model": "openai/x",
            "api_base": UNREACHABLE,
            "dimensions": 8,
            "extra_params": {"dimensions": 16},
        },
        "extra_params",
    ),
    (
        "extra_params.dimensions not the local model's",
        {"name": "n", "model": "local/hash-16", "extra_params": {"dimensions": 17}},
        "extra_params",
    ),
    (
        "extra_params holding a key",
        {"name": "n", "model": "local/hash-16", "extra_params": {"api_key": "sk-abc"}},
        "extra_params",
    ),
    (
        "remote model whose dimensions cannot be asked",
        {"name": "n", "model": "openai/x", "api_base": UNREACHABLE},
        "dimensions",
    ),
]


@pytest.mark.parametrize(("name", "body", "field"), INVALID_CREATES, ids=[c[0] for c in INVALID_CREATES])
def test_invalid_create_is_400_naming_the_field_and_creates_nothing(hash_collection, name, body, field):
    before = snapshot()
    error = error_of(send(client_with("add_collection"), "post", COLLECTIONS, body), 400)
    assert list(error["details"]) == [field], error
    assert error["message"].startswith(f"{field}: "), error
    assert snapshot() == before


def test_a_collection_another_request_creates_meanwhile_is_the_400_not_a_500(hash_collection, monkeypatch):
    """Three concurrent POSTs of one name answered 201, 400 and 500 (the IntegrityError of the loser
    whose checks ran before the winner's insert); `create_collection --if-not-exists` failed likewise."""
    checked = Collection.full_clean

    def then_another_request_creates_it(self, *args, **kwargs):
        checked(self, *args, **kwargs)
        Collection.objects.bulk_create([copy.copy(self)])  # committed between the checks and the save

    monkeypatch.setattr(Collection, "full_clean", then_another_request_creates_it)
    response = send(client_with("add_collection"), "post", COLLECTIONS, {"name": "notes", "model": "local/hash-32"})
    assert error_of(response, 400)["details"] == {"name": ["Collection with this Name already exists."]}
    assert Collection.objects.filter(name="notes").count() == 1
    out = StringIO()
    call_command("create_collection", "later", "--model", "local/hash-32", "--if-not-exists", stdout=out)
    assert out.getvalue().strip() == "Collection later exists."
    with pytest.raises(CommandError, match="Collection with this Name already exists"):
        call_command("create_collection", "last", "--model", "local/hash-32")


def test_names_differing_only_in_letter_case_are_refused_everywhere(hash_collection, monkeypatch):
    """A collection HASHES beside hashes was created: two collections a person reads as one."""
    api = client_with("add_collection", "change_collection")
    case = {"name": [NAME_CASE]}
    before = snapshot()
    upper = {"name": "HASHES", "model": "local/hash-32"}
    assert error_of(send(api, "post", COLLECTIONS, upper), 400)["details"] == case
    with pytest.raises(CommandError, match="in other letter case"):
        call_command("create_collection", "Hashes", "--model", "local/hash-32")
    assert snapshot() == before
    assert send(api, "post", COLLECTIONS, {"name": "notes", "model": "local/hash-32"}).status_code == 201
    before = snapshot()
    assert error_of(send(api, "patch", f"{COLLECTIONS}notes/", {"name": "Hashes"}), 400)["details"] == case
    assert snapshot() == before
    # Its own name in other letters is no clash.
    assert send(api, "patch", f"{COLLECTIONS}notes/", {"name": "Notes"}).status_code == 200

    # Created by another request after this one's checks: the database's constraint, the same 400.
    checked = Collection.full_clean

    def then_another_request_creates_it(self, *args, **kwargs):
        checked(self, *args, **kwargs)
        Collection.objects.bulk_create([Collection(**{**model_to_dict(self, exclude=["id", "team"]), "name": "later"})])

    monkeypatch.setattr(Collection, "full_clean", then_another_request_creates_it)
    assert error_of(send(api, "post", COLLECTIONS, {"name": "LATER", "model": "local/hash-32"}), 400)["details"] == case
    assert sorted(Collection.objects.values_list("name", flat=True)) == ["Notes", "hashes", "later"]


def test_the_migration_refuses_names_differing_only_in_case_and_names_them(hash_collection):
    """A database that holds such names already: the migration stops before it adds the constraint."""
    migration = importlib.import_module("pipeline.migrations.0016_collection_name_unique_any_case")
    migration.refuse_case_variants(apps, None)  # none yet
    with connection.cursor() as cur:
        cur.execute("DROP INDEX pipeline_collection_name_unique_any_case")  # the test's transaction rolls it back
    names = ("beta", "alpha", "ALPHA", "Beta")
    Collection.objects.bulk_create([Collection(name=n, model="local/hash-8", dimensions=8) for n in names])
    with pytest.raises(RuntimeError) as refused:
        migration.refuse_case_variants(apps, None)
    assert str(refused.value) == (
        "collection names now differ by more than letter case, and these do not: ALPHA, alpha; Beta, beta. "
        "Rename all but one of each (the admin, or PATCH /api/v1/collections/<name>/ with a new name), then "
        "migrate again."
    )


def test_the_benchmarks_prefix_is_theirs_alone(hash_collection):
    """A tenant's `benchmark-prod` had its metrics and alerts filed under collection="benchmark"."""
    api, refused = client_with("add_collection", "change_collection"), "names starting with benchmark- are reserved"
    before = snapshot()
    error = error_of(send(api, "post", COLLECTIONS, {"name": "benchmark-prod", "model": "local/hash-32"}), 400)
    assert error["details"]["name"][0].startswith(refused), error
    error = error_of(send(api, "patch", f"{COLLECTIONS}hashes/", {"name": "Benchmark-hashes"}), 400)
    assert error["details"]["name"][0].startswith(refused), error
    with pytest.raises(CommandError, match=refused):
        call_command("create_collection", "benchmark-x", "--model", "local/hash-32")
    assert snapshot() == before
    collection, _, _ = search_benchmark.build("benchmark-tiny", 10, dims=8)  # the benchmarks' own
    # A collection named so before the rule keeps its name through other changes (the admin, commands).
    Collection.objects.filter(pk=hash_collection.pk).update(name="benchmark-old")
    hash_collection.refresh_from_db()
    hash_collection.batch_size = 8
    hash_collection.full_clean()
    assert recording.metric_label(collection.name) == "benchmark" and not collection.is_reserved


def test_create_without_permission_is_403_and_anonymous_is_401(hash_collection):
    before = snapshot()
    body = {"name": "notes", "model": "local/hash-16"}
    # Every other pipeline permission, but not add_collection.
    others = Permission.objects.filter(content_type__app_label="pipeline").exclude(codename="add_collection")
    denied = send(client_with(*others.values_list("codename", flat=True)), "post", COLLECTIONS, body)
    assert error_of(denied, 403)["message"] == "permission pipeline.add_collection required"
    unread = send(client_with("add_collection"), "get", COLLECTIONS)
    assert error_of(unread, 403)["message"] == "permission pipeline.view_collection required"
    anonymous = send(APIClient(), "post", COLLECTIONS, body)
    error_of(anonymous, 401)
    assert anonymous["WWW-Authenticate"] == "Token"
    assert snapshot() == before
    # The same body is fine for a user who may add collections: the refusals were about permission.
    assert send(client_with("add_collection"), "post", COLLECTIONS, body).status_code == 201


def embed(api: APIClient, name: str, texts: dict[str, str]) -> None:
    docs = [{"id": k, "text": v} for k, v in texts.items()]
    assert send(api, "post", f"{COLLECTIONS}{name}/documents/", docs).status_code == 202
    assert EmbeddingIngestionPipeline().drain().embedded == len(texts)


def test_delete_through_the_api_drops_the_index_documents_and_chunks_of_that_collection_only(hash_collection):
    api = client_with("add_collection", "add_document", "delete_collection")
    assert send(api, "post", COLLECTIONS, {"name": "notes", "model": "local/hash-32"}).status_code == 201
    notes = Collection.objects.get(name="notes")
    embed(api, "notes", {"n1": "first note", "n2": "second note"})
    embed(api, "hashes", {"h1": "a hashed text"})
    assert (
        Chunk.objects.filter(collection=notes).count() == 2 and Document.objects.filter(collection=notes).count() == 2
    )
    assert notes.index_name in hnsw_indexes()

    for refused, status in ((client_with("view_collection", "change_collection"), 403), (APIClient(), 401)):
        before = snapshot()
        error_of(send(refused, "delete", f"{COLLECTIONS}notes/"), status)
        assert snapshot() == before

    response = send(api, "delete", f"{COLLECTIONS}notes/")
    assert response.status_code == 204, response.content

    assert not Collection.objects.filter(pk=notes.pk).exists()
    assert not Document.objects.filter(collection_id=notes.pk).exists()
    assert not Chunk.objects.filter(collection_id=notes.pk).exists()
    assert set(hnsw_indexes()) == {hash_collection.index_name}
    # The other collection keeps its index, documents and chunks.
    assert_collection_index(hash_collection, 16)
    assert Document.objects.get(collection=hash_collection).status == DocumentStatus.EMBEDDED
    assert Chunk.objects.filter(collection=hash_collection).count() == 1
    error_of(send(api, "delete", f"{COLLECTIONS}notes/"), 404)


@pytest.mark.django_db(transaction=True)
def test_deletes_of_one_collection_at_once_delete_it_once_without_a_deadlock(hash_collection):
    """Three concurrent DELETEs answered 503 (PostgreSQL's "deadlock detected" between their chunk
    deletes and index drops), 404 and 204. Now the collection row is locked first: one deletes, the
    others find it gone."""
    for attempt in range(3):
        collection = create_collection(name=f"notes{attempt}", model="local/hash-32")
        embed(client_with("add_document"), collection.name, {f"n{i}": f"note {i}" for i in range(20)})
        instances = [Collection.objects.get(pk=collection.pk) for _ in range(3)]
        results = concurrently(lambda i, instances=instances: instances[i].delete()[0] > 0, 3)
        assert sorted(results, key=str) == [False, False, True], results
        assert not Chunk.objects.filter(collection_id=collection.pk).exists()
        assert collection.index_name not in hnsw_indexes()
    # The API's loser is told so.
    gone = Collection.objects.get(name="hashes")
    Collection.objects.filter(pk=gone.pk).delete()
    with pytest.raises(NotFound, match="no collection named 'hashes'"):
        CollectionViewSet(request=None).perform_destroy(gone)


def test_a_patch_of_a_collection_deleted_meanwhile_is_a_404_not_a_500(hash_collection, monkeypatch):
    get_object = CollectionViewSet.get_object

    def read_then_deleted(view):  # a DELETE commits between the PATCH's read and its save
        collection = get_object(view)
        Collection.objects.filter(pk=collection.pk).delete()
        return collection

    monkeypatch.setattr(CollectionViewSet, "get_object", read_then_deleted)
    response = send(client_with("change_collection"), "patch", f"{COLLECTIONS}hashes/", {"batch_size": 8})
    assert error_of(response, 404)["message"] == "no collection named 'hashes'"
    assert not Collection.objects.filter(name="hashes").exists()


def test_the_admin_deletes_collections_counting_what_goes_with_them(hash_collection, admin_client):
    """Its confirmation listed every chunk (read into memory, thousands of lines for a large collection),
    and the delete action ran Django's collector over them instead of the set-wise deletes."""
    embed(client_with("add_document"), "hashes", {f"h{i}": f"hashed text {i}" for i in range(5)})
    selected = {"action": "delete_selected", "_selected_action": [hash_collection.pk]}
    page = admin_client.post("/admin/pipeline/collection/", selected).content.decode()
    assert "Documents: 5" in page and "Chunks: 5" in page and "#0" not in page
    admin_client.post("/admin/pipeline/collection/", {**selected, "post": "yes"})
    assert not Collection.objects.exists() and not Chunk.objects.exists() and hnsw_indexes() == {}


def test_a_collection_with_documents_changes_its_chunking_only_with_a_re_embed(hash_collection, admin_client):
    # A PATCH of chunk_size was accepted and cut only documents enqueued later the new way: a collection of
    # two chunkings, none of it said. The re-embed changes it for every document.
    api = client_with("change_collection", "reembed_collection")
    enqueue(hash_collection, [IncomingDocument("a", "Alpha text. " * 40)])
    EmbeddingIngestionPipeline().drain()
    error = error_of(send(api, "patch", f"{COLLECTIONS}hashes/", {"chunk_size": 500, "chunk_overlap": 10}), 400)
    assert "chunk_size: changes only with a re-embed (POST reembed)" in error["message"]
    assert (Collection.objects.get().chunk_size, Collection.objects.get().chunk_overlap) == (200, 20)
    # Unchanged values, and what cuts nothing, still go through.
    assert send(api, "patch", f"{COLLECTIONS}hashes/", {"chunk_size": 200, "batch_size": 8}).status_code == 200
    page = admin_client.get(f"/admin/pipeline/collection/{hash_collection.pk}/change/").content.decode()
    assert 'name="chunk_size"' not in page and 'name="batch_size"' in page

    assert send(api, "post", f"{COLLECTIONS}hashes/reembed/", {"chunk_size": 500}).status_code == 202
    EmbeddingIngestionPipeline().drain()
    assert Collection.objects.get().chunk_size == 500
    assert Chunk.objects.count() == 1, "the 480-character document is one chunk of 500"


def test_patch_changes_editable_fields_but_not_model_or_dimensions(hash_collection):
    api = client_with("change_collection")
    index_before = hnsw_indexes()

    response = send(api, "patch", f"{COLLECTIONS}hashes/", {"chunk_size": 500, "batch_size": 8})
    assert response.status_code == 200, response.content
    assert (response.json()["chunk_size"], response.json()["batch_size"]) == (500, 8)
    stored = Collection.objects.get(pk=hash_collection.pk)
    assert (stored.chunk_size, stored.batch_size, stored.chunk_overlap) == (500, 8, 20)

    # A rename keeps the collection, and so its index (named by primary key).
    assert send(api, "patch", f"{COLLECTIONS}hashes/", {"name": "renamed"}).status_code == 200
    assert Collection.objects.get(pk=hash_collection.pk).name == "renamed"
    assert hnsw_indexes() == index_before

    refused = [
        ({"model": "local/hash-32"}, "model"),
        ({"dimensions": 32}, "dimensions"),
        ({"chunk_overlap": 500}, "chunk_overlap"),  # checked against the stored chunk_size
        ({"extra_params": {"dimensions": 32}}, "extra_params"),  # checked against the stored dimensions
        ({"extra_params": ["dimensions", 32]}, "extra_params"),
        ({"extra_params": {"api_key": "sk-abc"}}, "extra_params"),
        ({"name": "not a slug"}, "name"),
        ({"hnsw_ef_construction": 20}, "hnsw_ef_construction"),  # checked against the stored hnsw_m (16)
        ({"hnsw_m": 40}, "hnsw_ef_construction"),  # the stored ef_construction (64) is below 2 * 40
        ({"ef_search": 2000}, "ef_search"),
    ]
    for body, field in refused:
        before = snapshot()
        error = error_of(send(api, "patch", f"{COLLECTIONS}renamed/", body), 400)
        assert list(error["details"]) == [field], (body, error)
        assert snapshot() == before
        if field in ("model", "dimensions"):
            assert "POST reembed" in str(error["details"][field]), error  # the way it can change

    before = snapshot()
    error_of(
        send(client_with("view_collection", "add_collection"), "patch", f"{COLLECTIONS}renamed/", {"paused": True}), 403
    )
    error_of(send(APIClient(), "patch", f"{COLLECTIONS}renamed/", {"paused": True}), 401)
    assert snapshot() == before


def test_extra_params_reach_the_provider_on_every_embedding_call(fake_provider, monkeypatch):
    """A collection created through the API: its extra_params are in the JSON body LiteLLM sends
    for document batches and for search queries, and a PATCH changes what is sent next."""
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-test-secret-123456")
    api = client_with("add_collection", "change_collection", "add_document", "view_chunk", "reembed_collection")
    body = {
        # LiteLLM forwards `dimensions` to OpenAI-style providers only for text-embedding-3 models
        # (it refuses the parameter, UnsupportedParamsError, for other model names).
        "name": "remote",
        "model": "openai/text-embedding-3-small",
        "api_base": fake_provider.api_base,
        "api_key_env": "FAKE_PROVIDER_KEY",
        "extra_params": {"dimensions": 8, "user": "embedportal-test"},
        "chunk_unit": "characters",
        "chunk_size": 100,
        "chunk_overlap": 0,
        "batch_size": 2,
        "contextual_chunks": False,  # the provider sees exactly the texts sent
    }
    response = send(api, "post", COLLECTIONS, body)
    assert response.status_code == 201, response.content
    assert response.json()["dimensions"] == 8  # taken from extra_params: no probe was needed
    assert fake_provider.requests == []

    texts = {f"d{i}": f"document number {i}" for i in range(5)}
    embed(api, "remote", texts)
    assert sorted(t for r in fake_provider.requests for t in r["inputs"]) == sorted(texts.values())
    assert len(fake_provider.requests) == 3  # batches of 2
    for request in fake_provider.requests:
        assert request["body"].get("dimensions") == 8, request["body"]
        assert request["body"].get("user") == "embedportal-test", request["body"]
        assert request["body"].get("model") == "text-embedding-3-small", request["body"]

    fake_provider.requests.clear()
    found = send(api, "post", f"{COLLECTIONS}remote/search/", {"query": "document number 3", "k": 1})
    assert found.status_code == 200, found.content
    assert found.json()["results"][0]["document_id"] == "d3"
    [query] = fake_provider.requests
    assert (query["inputs"], query["body"].get("dimensions"), query["body"].get("user")) == (
        ["document number 3"],
        8,
        "embedportal-test",
    )

    # Changed extra_params are what the next calls send.
    patched = send(api, "patch", f"{COLLECTIONS}remote/", {"extra_params": {"dimensions": 8, "user": "second"}})
    assert patched.status_code == 200, patched.content
    fake_provider.requests.clear()
    assert send(api, "post", f"{COLLECTIONS}remote/reembed/").status_code == 202
    assert EmbeddingIngestionPipeline().drain().embedded == len(texts)
    assert fake_provider.requests
    assert {r["body"].get("user") for r in fake_provider.requests} == {"second"}
    assert {r["body"].get("dimensions") for r in fake_provider.requests} == {8}


def test_budget_and_rate_limits_are_set_through_the_api_within_their_bounds(hash_collection):
    api = client_with("change_collection")
    url = f"{COLLECTIONS}hashes/"
    error = error_of(send(api, "patch", url, {"requests_per_minute": 0, "monthly_budget_usd": -1}), 400)
    assert set(error["details"]) == {"requests_per_minute", "monthly_budget_usd"}, error
    body = send(api, "patch", url, {"requests_per_minute": 600, "tokens_per_minute": 90000, "monthly_budget_usd": 25.5})
    assert body.status_code == 200, body.content
    stored = Collection.objects.get(pk=hash_collection.pk)
    assert (stored.requests_per_minute, stored.tokens_per_minute, stored.monthly_budget_usd) == (600, 90000, 25.5)


def test_pausing_through_patch_needs_the_pause_permission_as_the_pause_action_does(hash_collection, client):
    changer = client_with("change_collection", "view_collection")
    error = error_of(send(changer, "patch", f"{COLLECTIONS}hashes/", {"paused": True}), 403)
    assert error["message"] == "permission pipeline.pause_collection required"
    assert not Collection.objects.get().paused
    assert send(changer, "patch", f"{COLLECTIONS}hashes/", {"paused": False, "batch_size": 8}).status_code == 200
    pauser = client_with("change_collection", "pause_collection")
    assert send(pauser, "patch", f"{COLLECTIONS}hashes/", {"paused": True}).json()["paused"] is True

    # The admin's form: the paused box is read-only without the permission.
    page = f"/admin/pipeline/collection/{hash_collection.pk}/change/"
    client.force_login(staff("change_collection", "view_collection"))
    assert 'name="paused"' not in client.get(page).content.decode()
    client.force_login(staff("change_collection", "view_collection", "pause_collection"))
    assert 'name="paused"' in client.get(page).content.decode()
