from __future__ import annotations

import hashlib

import numpy as np
import pytest
from django.db import connection

from pipeline.choices import DocumentStatus
from pipeline.models import Chunk, Collection, Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue

pytestmark = pytest.mark.django_db

COLLECTION_ADD = "/admin/pipeline/collection/add/"
DOCUMENT_ADD = "/admin/pipeline/document/add/"


def collection_form(**overrides: str) -> dict[str, str]:
    return {
        "name": "admin-made",
        "model": "local/hash-32",
        "api_base": "",
        "api_key_env": "",
        "extra_params": "{}",
        "dimensions": "",
        "chunking_strategy": "recursive",
        "chunk_unit": "tokens",
        "chunk_size": "128",
        "chunk_overlap": "16",
        "batch_size": "32",
        "freshness_sla": "01:00:00",
        **overrides,
    }


def document_form(collection: Collection, external_id: str, text: str, metadata: str = "{}") -> dict[str, str]:
    return {
        "collection": str(collection.pk),
        "external_id": external_id,
        "text": text,
        "metadata": metadata,
        "source_modified_at_0": "",
        "source_modified_at_1": "",
    }


def test_collection_add_form_fills_dimensions_from_the_model_and_creates_its_hnsw_index(admin_client):
    response = admin_client.post(COLLECTION_ADD, collection_form())
    assert response.status_code == 302, response.context["adminform"].form.errors
    collection = Collection.objects.get(name="admin-made")
    assert collection.dimensions == 32
    with connection.cursor() as cur:
        cur.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [f"pipeline_chunk_hnsw_{collection.pk}"])
        (indexdef,) = cur.fetchone()
    assert "hnsw" in indexdef and "vector(32)" in indexdef and f"collection_id = {collection.pk}" in indexdef


def test_collection_add_form_with_an_unknown_local_model_is_a_form_error(admin_client):
    response = admin_client.post(COLLECTION_ADD, collection_form(model="local/no-such-model"))
    assert response.status_code == 200
    assert "unknown local model" in str(response.context["adminform"].form.errors)
    assert not Collection.objects.filter(name="admin-made").exists()


def test_adding_a_document_in_the_admin_enqueues_it(admin_client, hash_collection):
    text = "Added by an operator in the admin."
    response = admin_client.post(DOCUMENT_ADD, document_form(hash_collection, "ops-1", text, '{"by": "ops"}'))
    assert response.status_code == 302
    doc = Document.objects.get(collection=hash_collection, external_id="ops-1")
    assert doc.content_hash == hashlib.sha256(text.encode()).hexdigest()
    assert (doc.status, doc.text, doc.metadata) == (DocumentStatus.PENDING, text, {"by": "ops"})
    assert "Document ops-1 queued." in [str(m) for m in response.wsgi_request._messages]


@pytest.fixture
def embedded_doc(hash_collection) -> Document:
    enqueue(hash_collection, [IncomingDocument("ops-1", "First version.")])
    EmbeddingIngestionPipeline().drain()
    doc = Document.objects.get(external_id="ops-1")
    assert doc.status == DocumentStatus.EMBEDDED
    return doc


def test_adding_an_existing_id_with_new_text_in_the_admin_updates_it(admin_client, hash_collection, embedded_doc):
    response = admin_client.post(DOCUMENT_ADD, document_form(hash_collection, "ops-1", "Second version."))
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Document.objects.filter(external_id="ops-1").count() == 1
    doc = Document.objects.get(external_id="ops-1")
    assert (doc.status, doc.text, doc.pk) == (DocumentStatus.PENDING, "Second version.", embedded_doc.pk)
    assert doc.content_hash == hashlib.sha256(b"Second version.").hexdigest()


def test_adding_an_existing_id_with_the_same_text_in_the_admin_leaves_it_embedded(
    admin_client, hash_collection, embedded_doc
):
    response = admin_client.post(DOCUMENT_ADD, document_form(hash_collection, "ops-1", "First version."), follow=True)
    assert "Document ops-1 unchanged (not re-embedded)." in response.content.decode()
    doc = Document.objects.get(external_id="ops-1")
    assert (doc.status, doc.last_embedded_at) == (DocumentStatus.EMBEDDED, embedded_doc.last_embedded_at)


@pytest.mark.parametrize(
    ("external_id", "text", "metadata"),
    [
        ("ops-nul", "bad\x00text", "{}"),
        ("ops\x00nul", "fine text", "{}"),
        ("ops-nul", "fine text", '{"k": "a\\u0000"}'),
    ],
    ids=["text", "id", "metadata"],
)
def test_nul_byte_in_the_admin_document_form_is_a_form_error_and_nothing_is_stored(
    admin_client, hash_collection, external_id, text, metadata
):
    enqueue(hash_collection, [IncomingDocument("existing", "Already here.")])
    before = Document.objects.count()
    response = admin_client.post(DOCUMENT_ADD, document_form(hash_collection, external_id, text, metadata))
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors
    assert "null characters" in str(form.errors).lower() or "NUL" in str(form.errors)
    assert Document.objects.count() == before


@pytest.fixture
def stored_chunk(hash_collection) -> Chunk:
    enqueue(hash_collection, [IncomingDocument("vec", "A chunk whose vector must stay out of the page.")])
    EmbeddingIngestionPipeline().drain()
    return Chunk.objects.get(document__external_id="vec")


def vector_renderings(chunk: Chunk) -> list[str]:
    """Ways the vector's components would appear if the page rendered them."""
    values = np.asarray(chunk.embedding, dtype=np.float32)
    shown = []
    for v in values:
        shown += [str(float(v)), np.format_float_positional(v), f"{v:.4f}"]
    return [s for s in shown if len(s.lstrip("-")) >= 6]  # long enough not to match by chance


@pytest.mark.parametrize("page", ["changelist", "change"])
def test_chunk_admin_pages_show_the_dimension_but_never_the_raw_vector(admin_client, stored_chunk, page):
    url = "/admin/pipeline/chunk/" if page == "changelist" else f"/admin/pipeline/chunk/{stored_chunk.pk}/change/"
    response = admin_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "A chunk whose vector must stay out of the page." in html
    if page == "changelist":
        assert '<td class="field-dimensions">16</td>' in html
    else:
        assert '<div class="readonly">16</div>' in html
    renderings = vector_renderings(stored_chunk)
    assert any(s in str(np.asarray(stored_chunk.embedding)) for s in renderings)  # the probe can see a vector
    assert [s for s in renderings if s in html] == []
