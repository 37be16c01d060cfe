"""Re-running a corpus: unchanged documents are one set-based hash comparison, no row rewritten; with
--delete-missing, what the source no longer holds goes."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from pipeline.choices import DocumentStatus
from pipeline.models import Chunk, Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, delete_missing, enqueue


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


@pytest.mark.django_db
def test_a_sync_with_delete_missing_takes_out_what_the_source_no_longer_holds(hash_collection, tmp_path):
    # A page removed from a docs folder stayed searchable for ever: re-running enqueue only added.
    for name in ("a.md", "b.md", "c.md"):
        (tmp_path / name).write_text(f"the text of {name} " * 20)

    def sync() -> str:
        out = StringIO()
        call_command("enqueue", str(tmp_path), "--collection", "hashes", "--base", str(tmp_path),
                     "--no-progress", "--delete-missing", stdout=out)  # fmt: skip
        return out.getvalue()

    sync()
    EmbeddingIngestionPipeline().drain()
    (tmp_path / "b.md").unlink()
    (tmp_path / "bad.md").write_bytes(b"\xff\xfe not UTF-8")
    with pytest.raises(CommandError, match=r"nothing was deleted \(--delete-missing\) while any is rejected"):
        sync()
    assert Document.objects.filter(external_id="b.md").exists()

    (tmp_path / "bad.md").unlink()
    assert "Deleted 1 document(s) the source no longer holds: b.md." in sync()
    assert sorted(Document.objects.values_list("external_id", flat=True)) == ["a.md", "c.md"]
    assert set(Chunk.objects.values_list("document__external_id", flat=True)) == {"a.md", "c.md"}
    assert "Deleted" not in sync()

    # A source that holds nothing (an empty or unmounted folder) deleted every document.
    for name in ("a.md", "c.md"):
        (tmp_path / name).unlink()
    with pytest.raises(CommandError, match=r"hold no documents: --delete-missing would delete all 2 of hashes"):
        sync()
    assert sorted(Document.objects.values_list("external_id", flat=True)) == ["a.md", "c.md"]

    # A document another producer enqueued after the sync began is not the sync's to delete.
    began = timezone.now()
    enqueue(hash_collection, [IncomingDocument("from-the-api", "sent while the sync ran")])
    assert delete_missing(hash_collection, {"a.md", "c.md"}, began) == []
    assert delete_missing(hash_collection, {"a.md", "c.md"}, timezone.now()) == ["from-the-api"]
