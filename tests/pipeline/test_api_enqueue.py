from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from pipeline.choices import DocumentStatus
from pipeline.collections import create_collection
from pipeline.models import Chunk, Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from tests.tools import error_of

pytestmark = pytest.mark.django_db

DOCUMENTS = "/api/v1/collections/hashes/documents/"


@pytest.fixture
def existing(hash_collection) -> Document:
    """A document already queued: a rejected request must leave it exactly as it was."""
    enqueue(hash_collection, [IncomingDocument("existing", "The original text.")])
    return Document.objects.get(external_id="existing")


def post_json(api: APIClient, body: Any, url: str = DOCUMENTS):
    return api.post(url, data=json.dumps(body), content_type="application/json")


def post_raw(api: APIClient, body: bytes, url: str = DOCUMENTS):
    return api.post(url, data=body, content_type="application/json")


def test_enqueue_one_document_object_returns_202_created(api, hash_collection):
    response = post_json(api, {"id": "a", "text": "Alpha text.", "metadata": {"lang": "en"}})
    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "created": ["a"], "updated": [], "unchanged": [], "stale": []}
    doc = Document.objects.get(collection=hash_collection, external_id="a")
    assert (doc.status, doc.text, doc.metadata) == (DocumentStatus.PENDING, "Alpha text.", {"lang": "en"})


def test_enqueue_a_list_reports_created_updated_and_unchanged(api, hash_collection, existing):
    enqueue(hash_collection, [IncomingDocument("same", "Same text.")])
    response = post_json(
        api,
        [
            {"id": "new", "text": "A new document.", "modified_at": "2026-01-31T12:00:00Z"},
            {"id": "existing", "text": "The edited text."},
            {"id": "same", "text": "Same text."},
        ],
    )
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["created"], body["updated"], body["unchanged"]) == (
        3,
        ["new"],
        ["existing"],
        ["same"],
    )
    assert Document.objects.get(external_id="new").source_modified_at.isoformat() == "2026-01-31T12:00:00+00:00"


def test_reenqueue_of_unchanged_text_is_not_reembedded(api, hash_collection):
    doc = {"id": "a", "text": "Text that does not change."}
    assert post_json(api, doc).status_code == 202
    assert EmbeddingIngestionPipeline().drain().embedded == 1
    embedded = Document.objects.get(external_id="a")
    chunk_ids = list(Chunk.objects.filter(document=embedded).values_list("pk", flat=True))

    response = post_json(api, {**doc, "metadata": {"seen": 2}})
    assert response.status_code == 202
    assert response.json()["unchanged"] == ["a"]
    assert EmbeddingIngestionPipeline().drain().embedded == 0
    after = Document.objects.get(external_id="a")
    assert after.status == DocumentStatus.EMBEDDED
    assert after.last_embedded_at == embedded.last_embedded_at
    assert after.metadata == {"seen": 2}
    assert list(Chunk.objects.filter(document=after).values_list("pk", flat=True)) == chunk_ids


def test_reenqueue_of_changed_text_goes_back_to_pending(api, hash_collection):
    assert post_json(api, {"id": "a", "text": "First version."}).status_code == 202
    EmbeddingIngestionPipeline().drain()
    assert Document.objects.get(external_id="a").status == DocumentStatus.EMBEDDED

    response = post_json(api, {"id": "a", "text": "Second version."})
    assert response.status_code == 202
    assert response.json()["updated"] == ["a"]
    doc = Document.objects.get(external_id="a")
    assert (doc.status, doc.text) == (DocumentStatus.PENDING, "Second version.")


VALID = {"id": "valid-new", "text": "A perfectly good document."}
EDIT = {"id": "existing", "text": "An edit that must not be applied."}

# (name, documents sent alongside VALID and EDIT, words the message must contain)
INVALID_DOCUMENTS = [
    ("empty text", {"id": "x", "text": ""}, ["text is empty"]),
    ("whitespace text", {"id": "x", "text": " \n\t\u3000 "}, ["text is empty"]),
    ("oversize text", {"id": "x", "text": "x" * 51}, ["51 characters", "limit of 50"]),
    ("NUL in text", {"id": "x", "text": "bad\x00text"}, ["text", "ull character"]),
    ("NUL in id", {"id": "x\x00y", "text": "fine"}, ["id", "ull character"]),
    ("NUL in metadata value", {"id": "x", "text": "fine", "metadata": {"k": "a\x00"}}, ["metadata", "NUL"]),
    ("NUL in metadata key", {"id": "x", "text": "fine", "metadata": {"a\x00": 1}}, ["metadata", "NUL"]),
    ("missing id", {"text": "fine"}, ["id", "required"]),
    ("missing text", {"id": "x"}, ["text", "required"]),
    ("text as number", {"id": "x", "text": 42}, ["text", "string"]),
    ("text as object", {"id": "x", "text": {"a": 1}}, ["text", "string"]),
    ("metadata as list", {"id": "x", "text": "fine", "metadata": ["a"]}, ["metadata", "dictionary"]),
    ("id too long", {"id": "x" * 513, "text": "fine"}, ["id", "512"]),
    ("document not an object", "just a string", ["JSON object"]),
    ("naive modified_at", {"id": "x", "text": "fine", "modified_at": "2026-01-31T12:00:00"}, ["timezone"]),
    ("unparseable modified_at", {"id": "x", "text": "fine", "modified_at": "yesterday"}, ["modified_at"]),
    ("duplicate ids", {"id": "valid-new", "text": "Another text."}, ["valid-new", "more than once"]),
]


@pytest.mark.parametrize(("name", "bad", "words"), INVALID_DOCUMENTS, ids=[c[0] for c in INVALID_DOCUMENTS])
def test_request_with_an_invalid_document_is_rejected_whole(api, existing, settings, name, bad, words):
    settings.EMBEDPORTAL_MAX_DOCUMENT_CHARS = 50
    before = Document.objects.count()
    error = error_of(post_json(api, [VALID, EDIT, bad]), 400)
    for word in words:
        assert word in error["message"], error
    assert Document.objects.count() == before
    assert Document.objects.get(external_id="existing").text == existing.text
    assert not Document.objects.filter(external_id="valid-new").exists()


def test_invalid_document_error_names_its_index_in_the_request(api, existing):
    error = error_of(post_json(api, [VALID, {"id": "x", "text": " "}]), 400)
    assert error["message"].startswith("documents: 1: ")
    assert "1" in error["details"]["documents"]


# Bodies that are not valid JSON documents at all: (name, raw body, words the message must contain)
INVALID_BODIES = [
    ("truncated JSON", b'{"id": "x", "text": ', ["JSON parse error"]),
    ("invalid UTF-8", b'{"id": "x", "text": "caf\xe9 cr\xe8me"}', ["not UTF-8", "send JSON as UTF-8"]),
    ("lone surrogate in text", b'[{"id": "x", "text": "bad \\ud800 text"}]', ["text", "urrogate"]),
    ("lone surrogate in id", b'[{"id": "x\\udfff", "text": "fine"}]', ["id", "urrogate"]),
    ("lone surrogate in metadata", b'[{"id": "x", "text": "fine", "metadata": {"k": "\\ud800"}}]', ["metadata"]),
    ("lone surrogate in metadata key", b'[{"id": "x", "text": "fine", "metadata": {"\\ud800": 1}}]', ["metadata"]),
]


@pytest.mark.parametrize(("name", "body", "words"), INVALID_BODIES, ids=[c[0] for c in INVALID_BODIES])
def test_malformed_body_is_rejected_and_nothing_is_stored(api, existing, name, body, words):
    before = Document.objects.count()
    error = error_of(post_raw(api, body), 400)
    for word in words:
        assert word in error["message"], error
    assert Document.objects.count() == before


def test_unknown_collection_is_404_naming_it(api, existing):
    before = Document.objects.count()
    error = error_of(post_json(api, VALID, url="/api/v1/collections/nowhere/documents/"), 404)
    assert "nowhere" in error["message"]
    assert Document.objects.count() == before


def test_too_many_documents_in_one_request_are_rejected(api, existing, settings):
    settings.EMBEDPORTAL_MAX_DOCUMENTS_PER_REQUEST = 3
    before = Document.objects.count()
    docs = [{"id": f"d{i}", "text": f"Document {i}."} for i in range(4)]
    error = error_of(post_json(api, docs), 400)
    assert "4 documents" in error["message"] and "limit is 3" in error["message"]
    assert Document.objects.count() == before
    assert post_json(api, docs[:3]).status_code == 202


def test_empty_list_is_rejected(api, existing):
    before = Document.objects.count()
    error = error_of(post_json(api, []), 400)
    assert "non-empty list" in error["message"]
    assert Document.objects.count() == before


def test_valid_request_after_rejected_ones_is_accepted_in_full(api, existing, settings):
    settings.EMBEDPORTAL_MAX_DOCUMENT_CHARS = 50
    for _, bad, _ in INVALID_DOCUMENTS:
        assert post_json(api, [VALID, EDIT, bad]).status_code == 400
    for _, body, _ in INVALID_BODIES:
        assert post_raw(api, body).status_code == 400
    response = post_json(api, [VALID, EDIT])
    assert response.status_code == 202
    assert (response.json()["created"], response.json()["updated"]) == (["valid-new"], ["existing"])
    assert Document.objects.get(external_id="existing").text == EDIT["text"]
    assert Document.objects.get(external_id="valid-new").status == DocumentStatus.PENDING


SEARCH = "/api/v1/collections/hashes/search/"
TEXTS = {
    "alpha": "Alpha: workers claim documents with leases.",
    "beta": "Beta: the HNSW index makes search fast.",
    "gamma": "Gamma: metrics go to Prometheus.",
}


@pytest.fixture
def embedded(hash_collection):
    enqueue(hash_collection, [IncomingDocument(k, v, metadata={"k": k}) for k, v in TEXTS.items()])
    assert EmbeddingIngestionPipeline().drain().embedded == 3
    return hash_collection


def test_search_returns_ranked_results_with_document_id_score_and_text(api, embedded):
    # local/hash-16 vectors are equal only for equal texts: the exact text must rank first.
    response = post_json(api, {"query": TEXTS["beta"], "k": 3}, url=SEARCH)
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 3
    assert (results[0]["document_id"], results[0]["text"]) == ("beta", TEXTS["beta"])
    assert results[0]["score"] == pytest.approx(1.0, abs=1e-5)
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert {r["document_id"] for r in results} == set(TEXTS)
    assert post_json(api, {"query": TEXTS["gamma"], "k": 1}, url=SEARCH).json()["results"][0]["document_id"] == "gamma"


@pytest.mark.parametrize("k", [0, -1, 101])
def test_search_rejects_k_out_of_range(api, embedded, k):
    error = error_of(post_json(api, {"query": "anything", "k": k}, url=SEARCH), 400)
    assert error["message"].startswith("k: ")


def test_search_of_unknown_collection_is_404(api, embedded):
    error = error_of(post_json(api, {"query": "anything", "k": 1}, url="/api/v1/collections/nowhere/search/"), 404)
    assert "nowhere" in error["message"]


def test_document_list_filters_by_collection_and_status(api, hash_collection):
    # Created before anything is embedded: CREATE INDEX cannot follow chunk writes in one transaction.
    other = create_collection(name="other", model="local/hash-16")
    enqueue(hash_collection, [IncomingDocument(k, v) for k, v in TEXTS.items()])
    assert EmbeddingIngestionPipeline().drain().embedded == 3
    enqueue(hash_collection, [IncomingDocument("delta", "Delta: still pending.")])
    enqueue(other, [IncomingDocument("epsilon", "Epsilon: pending elsewhere.")])

    def ids(query: str) -> set[str]:
        response = api.get(f"/api/v1/documents/?{query}")
        assert response.status_code == 200
        return {d["id"] for d in response.json()["results"]}

    assert ids("collection=hashes&status=embedded") == {"alpha", "beta", "gamma"}
    assert ids("collection=hashes&status=pending") == {"delta"}
    assert ids("collection=other") == {"epsilon"}
    assert ids("status=pending") == {"delta", "epsilon"}
    assert ids("collection=other&status=embedded") == set()
    # A deferred document says when it will be tried again (the admin showed it; the API did not).
    later = timezone.now() + timedelta(minutes=2)
    Document.objects.filter(external_id="delta").update(available_at=later)
    delta = api.get("/api/v1/collections/hashes/documents/delta/").json()
    assert (delta["status"], parse_datetime(delta["available_at"])) == ("pending", later)
