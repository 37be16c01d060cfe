"""Re-running an unchanged corpus: one set-based hash comparison, no row rewritten."""

from __future__ import annotations

import pytest
from django.db import connection

from pipeline.choices import DocumentStatus
from pipeline.models import Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue


def _row_versions(ids: list[str]) -> dict[str, int]:
    """Each document's tuple version (xmin): an UPDATE, even to the same values, changes it."""
    with connection.cursor() as cur:
        cur.execute("SELECT external_id, xmin::text::bigint FROM pipeline_document WHERE external_id = ANY(%s)", [ids])
        return dict(cur.fetchall())


def _corpus(n: int, version: str = "v1") -> list[IncomingDocument]:
    return [IncomingDocument(f"doc-{i}", f"{version} text of document {i} " * 20, metadata={"i": i}) for i in range(n)]


def _embedded_corpus(collection, n: int) -> tuple[list[IncomingDocument], dict[str, int]]:
    """N documents enqueued and embedded, and their rows' versions."""
    docs = _corpus(n)
    enqueue(collection, docs)
    EmbeddingIngestionPipeline().drain()
    return docs, _row_versions([d.external_id for d in docs])


@pytest.mark.django_db(transaction=True)
def test_rerun_of_unchanged_corpus_skips_every_document_without_rewriting_rows(hash_collection):
    docs, before = _embedded_corpus(hash_collection, 40)

    result = enqueue(hash_collection, docs)

    assert sorted(result.unchanged) == sorted(d.external_id for d in docs)
    assert not result.created and not result.updated
    assert _row_versions([d.external_id for d in docs]) == before
    assert Document.objects.filter(collection=hash_collection, status=DocumentStatus.EMBEDDED).count() == 40
    assert EmbeddingIngestionPipeline().drain().claimed == 0


@pytest.mark.django_db(transaction=True)
def test_rerun_enqueues_changed_and_new_documents_and_refreshes_only_changed_metadata(hash_collection):
    docs, before = _embedded_corpus(hash_collection, 10)
    again = list(docs)
    again[3] = IncomingDocument("doc-3", "a new version of document three " * 20, metadata={"i": 3})
    again[5] = IncomingDocument("doc-5", docs[5].text, metadata={"i": 5, "tag": "moved"})
    again.append(IncomingDocument("doc-new", "a document that was not there before " * 20))

    result = enqueue(hash_collection, again)

    assert result.updated == ["doc-3"] and result.created == ["doc-new"]
    assert sorted(result.unchanged) == sorted(f"doc-{i}" for i in range(10) if i != 3)
    after = _row_versions([d.external_id for d in docs])
    rewritten = {k for k in before if after[k] != before[k]}
    assert rewritten == {"doc-3", "doc-5"}
    moved = Document.objects.get(external_id="doc-5")
    assert moved.metadata == {"i": 5, "tag": "moved"} and moved.status == DocumentStatus.EMBEDDED
    assert Document.objects.get(external_id="doc-3").status == DocumentStatus.PENDING
    report = EmbeddingIngestionPipeline().drain()
    assert report.embedded == 2
