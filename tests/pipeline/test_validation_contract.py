"""One validation contract for every entry point: the API, the admin, the commands and `.jsonl`
files refuse the same things with the same messages, and unknown fields or query parameters are
a 400 naming them."""

from __future__ import annotations

import json
from html import escape
from io import StringIO
from pathlib import Path
from urllib.parse import urljoin

import pytest
from django.core.management import CommandError, call_command

from pipeline.choices import DocumentStatus
from pipeline.models import Collection, Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from tests.tools import error_of

pytestmark = pytest.mark.django_db

OVERLAP = "must be at least 0 and smaller than chunk_size"
SLA = "must be a positive duration, e.g. 01:00:00 for one hour"
DIMENSIONS = "Ensure this value is greater than or equal to 1."


def create_by_command(name: str, **options) -> str:
    with pytest.raises(CommandError) as raised:
        call_command("create_collection", name, model="local/hash-16", stdout=StringIO(), **options)
    return str(raised.value)


def admin_form(**fields) -> dict:
    """The collection admin's add form, filled in; `fields` override."""
    return {
        "name": "viaadmin",
        "model": "local/hash-16",
        "api_base": "",
        "api_key_env": "",
        "extra_params": "{}",
        "chunking_strategy": "recursive",
        "chunk_unit": "tokens",
        "chunk_size": 256,
        "chunk_overlap": 32,
        "batch_size": 64,
        "freshness_sla": "01:00:00",
        **fields,
    }


def create_by_admin(admin_client, **fields) -> str:
    response = admin_client.post("/admin/pipeline/collection/add/", admin_form(**fields))
    assert response.status_code == 200, "the form was accepted"
    return response.content.decode()


def test_unknown_api_fields_are_a_400_naming_them_with_the_likely_name(api):
    body = error_of(
        api.post("/api/v1/collections/", {"name": "typo", "model": "local/hash-16", "strategy": "markdown"}), 400
    )
    assert body["details"] == {"strategy": ['unknown field; did you mean "chunking_strategy"?']}
    assert not Collection.objects.filter(name="typo").exists()

    Collection.objects.create(name="docs", model="local/hash-16", dimensions=16)
    body = error_of(api.post("/api/v1/collections/docs/documents/", {"id": "a", "text": "x", "modified": "2026"}), 400)
    assert "modified" in json.dumps(body["details"]) and "modified_at" in json.dumps(body["details"])
    assert not Document.objects.exists()
    body = error_of(api.post("/api/v1/collections/docs/search/", {"query": "x", "top_k": 3}), 400)
    assert body["details"] == {"top_k": ['unknown field; did you mean "k"?']} or "top_k" in body["message"]


def test_form_encoded_bodies_are_refused_where_the_api_takes_json(api, admin_client):
    Collection.objects.create(name="docs", model="local/hash-16", dimensions=16)
    response = admin_client.post("/api/v1/collections/docs/documents/", {"id": "a", "text": "form-encoded"})
    body = error_of(response, 415)
    assert "multipart/form-data" in body["message"]
    response = admin_client.post(
        "/api/v1/collections/", "name=x&model=local/hash-16", content_type="application/x-www-form-urlencoded"
    )
    error_of(response, 415)
    assert not Document.objects.exists() and not Collection.objects.filter(name="x").exists()


@pytest.mark.parametrize(
    ("query", "name"),
    [("status=bogus", "status"), ("stauts=failed", "stauts"), ("collection=docs&page=2", "page")],
)
def test_unknown_query_parameters_and_filter_values_are_a_400(api, query, name):
    Collection.objects.create(name="docs", model="local/hash-16", dimensions=16)
    for url in ("/api/v1/documents/", "/api/v1/collections/docs/documents/"):
        body = error_of(api.get(f"{url}?{query}"), 400)
        assert name in body["details"], body
    body = error_of(api.get("/api/v1/failures/?state=nope"), 400)
    assert "state" in body["details"]
    assert api.get("/api/v1/documents/?status=failed&limit=5&offset=0").status_code == 200


def test_an_unknown_format_is_a_400_naming_the_formats_not_a_bare_404(api):
    # DRF answered 404 "Not found." for ?format=xml, as if the collection list did not exist.
    for url in ("/api/v1/collections/", "/api/v1/documents/", "/api/v1/failures/", "/api/v1/health/"):
        body = error_of(api.get(url, {"format": "xml"}), 400)
        assert body["message"] == "format: unknown format 'xml'; known: api, json", (url, body)
    assert api.get("/api/v1/collections/", {"format": "json"}).status_code == 200


@pytest.mark.parametrize(
    ("url", "query"),
    [
        ("/api/v1/documents/", "status=pending&status=failed"),
        ("/api/v1/collections/docs/documents/", "status=failed&status=pending"),
        ("/api/v1/failures/", "state=open&state=resolved"),
        ("/api/v1/audit/", "limit=1&limit=2"),
        ("/api/v1/collections/", "offset=0&offset=1"),
    ],
)
def test_a_query_parameter_given_twice_is_a_400_not_its_last_value_alone(api, url, query):
    # ?status=pending&status=failed answered the failed documents alone (the last value), as if asked for them.
    Collection.objects.create(name="docs", model="local/hash-16", dimensions=16)
    name = query.split("=")[0]
    body = error_of(api.get(f"{url}?{query}"), 400)
    assert body["details"] == {name: ["given 2 times; give it once (every parameter takes one value)"]}, body
    assert body["message"] == f"{name}: given 2 times; give it once (every parameter takes one value)"


@pytest.mark.parametrize(
    ("query", "name", "message"),
    [
        ("limit=abc", "limit", "must be a whole number from 1 to 1000"),
        ("limit=-1", "limit", "must be a whole number from 1 to 1000"),
        ("limit=0", "limit", "must be a whole number from 1 to 1000"),
        # A page is bounded: a million rows in one answer would be read into memory at once.
        ("limit=1000000", "limit", "must be a whole number from 1 to 1000"),
        ("offset=x", "offset", "must be a whole number, 0 or more"),
        ("offset=-5", "offset", "must be a whole number, 0 or more"),
    ],
)
def test_paging_parameters_out_of_range_are_a_400_not_the_default_page(api, query, name, message):
    # They were ignored: ?limit=abc answered the default page of 100, ?limit=1000000 every row.
    Collection.objects.create(name="docs", model="local/hash-16", dimensions=16)
    for url in ("/api/v1/documents/", "/api/v1/collections/docs/documents/", "/api/v1/failures/", "/api/v1/audit/"):
        body = error_of(api.get(f"{url}?{query}"), 400)
        assert body["details"] == {name: [message]}, (url, body)
    assert len(api.get("/api/v1/collections/?limit=1000&offset=0").json()["results"]) == 1


def test_dimensions_0_is_refused_everywhere_and_omitting_it_asks_the_model(api, admin_client):
    assert DIMENSIONS in create_by_command("zero", dimensions=0)
    body = error_of(api.post("/api/v1/collections/", {"name": "zero", "model": "local/hash-16", "dimensions": 0}), 400)
    assert body["details"] == {"dimensions": [DIMENSIONS]}
    assert DIMENSIONS in create_by_admin(admin_client, name="zero", dimensions=0)
    assert not Collection.objects.filter(name="zero").exists()
    call_command("create_collection", "asked", model="local/hash-16", stdout=StringIO())
    assert Collection.objects.get(name="asked").dimensions == 16


def test_a_negative_or_zero_freshness_sla_is_refused_everywhere(api, admin_client):
    assert f"freshness_sla: {SLA}" in create_by_command("stale", freshness_sla=-60)
    assert f"freshness_sla: {SLA}" in create_by_command("stale", freshness_sla=0)
    # More seconds than a duration holds was an OverflowError traceback.
    assert create_by_command("stale", freshness_sla=10**17) == (
        "--freshness-sla 100000000000000000: more seconds than a duration holds; e.g. 3600 for one hour"
    )
    body = error_of(
        api.post("/api/v1/collections/", {"name": "stale", "model": "local/hash-16", "freshness_sla": "-01:00:00"}), 400
    )
    assert body["details"] == {"freshness_sla": [SLA]}
    assert SLA in create_by_admin(admin_client, name="stale", freshness_sla="-1 00:00:00")
    Collection.objects.create(name="docs", model="local/hash-16", dimensions=16)
    body = error_of(api.patch("/api/v1/collections/docs/", {"freshness_sla": "00:00:00"}), 400)
    assert body["details"] == {"freshness_sla": [SLA]}
    # Accepted, it overflowed every collection's stale detection and reprocessing metrics (the fuzzer's).
    body = error_of(api.patch("/api/v1/collections/docs/", {"freshness_sla": "999999999 00:00:00"}), 400)
    assert body["details"] == {"freshness_sla": ["must be at most 366 days (a longer lag is no freshness target)"]}
    assert "freshness_sla: must be at most 366 days" in create_by_command("stale", freshness_sla=367 * 86400)
    assert not Collection.objects.filter(name="stale").exists()


def test_an_api_base_without_its_scheme_is_refused_everywhere(api, admin_client, fake_provider):
    # The admin completed it with https:// where the API refused it: a provider on http:// got https.
    body = error_of(
        api.post("/api/v1/collections/", {"name": "bare", "model": "local/hash-16", "api_base": "gw/v1"}), 400
    )
    assert body["details"] == {"api_base": ["Enter a valid URL."]}
    assert "Enter a valid URL." in create_by_admin(admin_client, name="bare", api_base="gw.example/v1")
    assert not Collection.objects.filter(name="bare").exists()


def test_the_overlap_rule_reads_the_same_in_words_everywhere(api, admin_client):
    message = create_by_command("overlap", chunk_size=64, chunk_overlap=64)
    assert message == f"chunk_overlap: {OVERLAP}"
    assert "pipeline_collection_overlap_lt_size" not in message
    body = error_of(
        api.post(
            "/api/v1/collections/", {"name": "overlap", "model": "local/hash-16", "chunk_size": 64, "chunk_overlap": 64}
        ),
        400,
    )
    assert body["details"] == {"chunk_overlap": [OVERLAP]}
    page = create_by_admin(admin_client, name="overlap", chunk_size=64, chunk_overlap=64)
    assert OVERLAP in page and "pipeline_collection_overlap_lt_size" not in page


def test_the_hnsw_build_rule_reads_the_same_in_the_api_and_the_admin(api, admin_client):
    rule = "must be at least 2 * hnsw_m (48): pgvector's rule"
    body = error_of(
        api.post(
            "/api/v1/collections/",
            {"name": "graph", "model": "local/hash-16", "hnsw_m": 24, "hnsw_ef_construction": 40},
        ),
        400,
    )
    assert body["details"] == {"hnsw_ef_construction": [rule]}
    page = create_by_admin(admin_client, name="graph", hnsw_m=24, hnsw_ef_construction=40)
    assert escape(rule) in page and "pipeline_collection_hnsw_ef_construction_ge_2m" not in page
    assert "Ensure this value is less than or equal to 1000." in create_by_admin(admin_client, ef_search=1001)
    assert not Collection.objects.filter(name__in=["graph", "viaadmin"]).exists()
    # Left empty in the admin: pgvector's defaults, and the index is built with them.
    accepted = admin_client.post(
        "/admin/pipeline/collection/add/",
        admin_form(name="defaults", hnsw_m="", hnsw_ef_construction="", ef_search="", provider_concurrency=""),
    )
    assert accepted.status_code == 302
    made = Collection.objects.get(name="defaults")
    assert (made.hnsw_m, made.hnsw_ef_construction, made.ef_search, made.provider_concurrency) == (16, 64, None, 1)


def test_duplicate_ids_in_a_jsonl_file_are_refused_like_the_api_refuses_them(api, tmp_path: Path):
    Collection.objects.create(name="docs", model="local/hash-16", dimensions=16)
    body = error_of(
        api.post("/api/v1/collections/docs/documents/", [{"id": "a", "text": "1"}, {"id": "a", "text": "2"}]), 400
    )
    api_message = body["details"]["documents"]["1"][0]
    assert api_message == "id 'a' appears more than once; send each document once"

    lines = [{"id": "a", "text": "first"}, {"id": "b", "text": "other"}, {"id": "a", "text": "second"}]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    err = StringIO()
    with pytest.raises(CommandError, match="1 document"):
        call_command("enqueue", str(path), collection="docs", no_progress=True, stdout=StringIO(), stderr=err)
    assert f"rejected {path}:3: {api_message}" in err.getvalue()
    # The first occurrence was taken; the repeat did not silently replace it.
    assert dict(Document.objects.values_list("external_id", "text")) == {"a": "first", "b": "other"}


def test_documents_are_addressed_by_collection_and_their_own_id(api):
    docs = Collection.objects.create(name="docs", model="local/hash-16", dimensions=16, contextual_chunks=False)
    enqueue(docs, [IncomingDocument("guides/setup.v2.md", "how to set up"), IncomingDocument("cats", "meow")])
    listed = api.get("/api/v1/collections/docs/documents/").json()["results"]
    urls = {d["id"]: d["url"] for d in listed}
    assert urls == {
        "guides/setup.v2.md": "/api/v1/collections/docs/documents/guides/setup.v2.md/",
        "cats": "/api/v1/collections/docs/documents/cats/",
    }
    shown = api.get(urls["guides/setup.v2.md"])
    assert shown.status_code == 200 and shown.json()["id"] == "guides/setup.v2.md"
    assert api.get("/api/v1/collections/docs/documents/dogs/").status_code == 404
    assert "no collection named 'nope'" in error_of(api.get("/api/v1/collections/nope/documents/cats/"), 404)["message"]

    assert error_of(api.post(urls["cats"] + "requeue/"), 409)["message"].startswith("document is pending")
    EmbeddingIngestionPipeline().drain()
    requeued = api.post(urls["guides/setup.v2.md"] + "requeue/")
    assert requeued.status_code == 202 and requeued.json()["status"] == DocumentStatus.PENDING
    # The internal number is no address any more.
    doc = Document.objects.get(external_id="cats")
    assert api.get(f"/api/v1/documents/{doc.pk}/").status_code == 404


def test_a_documents_url_survives_the_dot_segment_removal_every_client_does(api):
    """A client resolves "." and ".." in a path (RFC 3986; urljoin, curl, browsers): the url of "a/../b"
    was /documents/a/../b/, which they send as /documents/b/, so a DELETE of it deleted document "b"."""
    docs = Collection.objects.create(name="docs", model="local/hash-16", dimensions=16, contextual_chunks=False)
    ids = ["b", "a/../b", "..", "c/./d", "c/d", "v1.2/notes..md"]
    enqueue(docs, [IncomingDocument(i, f"text of {i}") for i in ids])
    listed = api.get("/api/v1/collections/docs/documents/").json()["results"]
    urls = {d["id"]: urljoin("http://testserver/", d["url"]).removeprefix("http://testserver") for d in listed}
    assert urls["a/../b"] == "/api/v1/collections/docs/documents/a/%2E%2E/b/"
    assert urls["v1.2/notes..md"] == "/api/v1/collections/docs/documents/v1.2/notes..md/"
    for external_id, url in urls.items():
        assert api.get(url).json()["id"] == external_id, url
    assert api.delete(urls["a/../b"]).status_code == 204
    assert api.delete(urls[".."]).status_code == 204
    assert api.post(urls["c/./d"] + "requeue/").status_code == 409  # pending: the right one, not c/d's 404
    assert sorted(Document.objects.values_list("external_id", flat=True)) == ["b", "c/./d", "c/d", "v1.2/notes..md"]


def test_the_slash_redirect_and_the_404_hint_keep_dot_segments_encoded(api):
    """A schemathesis run: GET .../documents/a/%2E%2E/b answered 301 to .../documents/a/../b/, which a client
    follows to document "b"; .../documents/%2E to .../documents/./, the list."""
    docs = Collection.objects.create(name="docs", model="local/hash-16", dimensions=16, contextual_chunks=False)
    enqueue(docs, [IncomingDocument(i, f"text of {i}") for i in ("b", "a/../b", "a/./b", "a/b", "..")])
    base = "/api/v1/collections/docs/documents/"
    for external_id, sent in (("a/../b", "a/%2E%2E/b"), ("a/./b", "a/%2E/b"), ("..", "%2E%2E")):
        redirect = api.get(base + sent)
        assert redirect.status_code == 301 and redirect["Location"] == f"{base}{sent}/", external_id
        followed = urljoin("http://testserver/", redirect["Location"]).removeprefix("http://testserver")
        assert api.get(followed).json()["id"] == external_id
    assert api.get(base + "%2E")["Location"] == base + "%2E/"
    hint = error_of(api.delete(base + "a/%2E%2E/b"), 404)["message"]
    assert hint.startswith(f"no API route '{base}a/%2E%2E/b' (did you mean '{base}a/%2E%2E/b/'?)"), hint


def test_ids_whose_address_would_break_are_refused_and_stored_ones_stay_reachable(api, tmp_path):
    """An adversarial-input soak: "a\nb" was accepted, then every list page holding it answered 500
    (no route matched its address) and it could be neither read nor deleted; "x/requeue"'s address was
    the requeue route of "x", whose POST requeued document x."""
    docs = Collection.objects.create(name="docs", model="local/hash-16", dimensions=16, contextual_chunks=False)
    url = "/api/v1/collections/docs/documents/"
    for bad, message in (
        ("a\nb", "id holds a control or formatting character ('\\n' at 1); remove it"),
        ("tab\there", "id holds a control or formatting character ('\\t' at 3); remove it"),
        # A bidi override showed this one in the admin's document list as invoice-exe.pdf.
        ("invoice-\u202efdp.exe", "id holds a control or formatting character ('\\u202e' at 8); remove it"),
        ("x/requeue", "id ends in /requeue: its address would be the requeue route of the document before it"),
    ):
        assert message in error_of(api.post(url, [{"id": bad, "text": "t"}], format="json"), 400)["message"], bad
        lines = tmp_path / "docs.jsonl"
        lines.write_text(json.dumps({"id": bad, "text": "t"}) + "\n")
        err = StringIO()
        with pytest.raises(CommandError):
            call_command("enqueue", str(lines), collection="docs", no_progress=True, stdout=StringIO(), stderr=err)
        assert message in err.getvalue(), err.getvalue()
    assert not Document.objects.exists()
    # One stored before the rule: listed, read and deleted by its url.
    Document.objects.create(collection=docs, external_id="old\nid", text="t", content_hash="h", status="pending")
    listed = api.get(url)
    assert listed.status_code == 200
    address = listed.json()["results"][0]["url"]
    assert api.get(address).json()["id"] == "old\nid"
    assert api.delete(address).status_code == 204 and not Document.objects.exists()


def test_search_returns_metadata_as_an_object_in_the_api_and_the_command(api):
    docs = Collection.objects.create(name="docs", model="local/hash-16", dimensions=16)
    enqueue(docs, [IncomingDocument("a", "exact text", metadata={"lang": "en", "tags": ["x"]})])
    EmbeddingIngestionPipeline().drain()
    hits = api.post("/api/v1/collections/docs/search/", {"query": "exact text", "k": 1}).json()["results"]
    assert hits[0]["metadata"] == {"lang": "en", "tags": ["x"]}
    out = StringIO()
    call_command("search", "exact text", collection="docs", k=1, json=True, stdout=out)
    assert json.loads(out.getvalue())[0]["metadata"] == {"lang": "en", "tags": ["x"]}


def test_a_chunk_longer_than_the_model_reads_is_refused_everywhere(api, admin_client):
    # all-MiniLM-L6-v2 reads 256 tokens: a 1,000-token chunk was accepted, and the model silently
    # embedded its first quarter (search by vector never saw the rest).
    minilm = "local/all-MiniLM-L6-v2 reads at most 256 tokens of an input: a 1000-token chunk would be cut or refused"
    with pytest.raises(CommandError, match=minilm):
        call_command("create_collection", "long", chunk_size=1000, stdout=StringIO())
    body = error_of(api.post("/api/v1/collections/", {"name": "long", "chunk_size": 1000}), 400)
    assert body["details"] == {"chunk_size": [minilm]}
    assert escape(minilm) in create_by_admin(admin_client, name="long", model="local/all-MiniLM-L6-v2", chunk_size=1000)
    # A provider's limit comes from LiteLLM's model map (text-embedding-3-small: 8191).
    body = error_of(
        api.post(
            "/api/v1/collections/",
            {"name": "long", "model": "openai/text-embedding-3-small", "dimensions": 16, "chunk_size": 9000},
        ),
        400,
    )
    assert "reads at most 8191 tokens" in body["details"]["chunk_size"][0]
    assert not Collection.objects.filter(name="long").exists()
    # A re-embed may not lengthen chunks past it either; within it, and in characters, is fine.
    api.post("/api/v1/collections/", {"name": "short", "chunk_size": 256}, format="json")
    body = error_of(api.post("/api/v1/collections/short/reembed/", {"chunk_size": 1000}), 400)
    assert body["details"] == {"chunk_size": [minilm]}
    assert Collection.objects.get(name="short").chunk_size == 256
    # A collection stored so before the rule still takes its other changes; a re-embed is how it changes size.
    Collection.objects.filter(name="short").update(chunk_size=1000)
    assert api.patch("/api/v1/collections/short/", {"keyword_weight": 0.4}, format="json").status_code == 200
    assert (
        api.post("/api/v1/collections/", {"name": "chars", "chunk_unit": "characters", "chunk_size": 1000}).status_code
        == 201
    )
    assert (
        api.post("/api/v1/collections/", {"name": "hashes", "model": "local/hash-16", "chunk_size": 100000}).status_code
        == 201
    )
