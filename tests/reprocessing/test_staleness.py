"""Freshness SLA: stale documents are counted per collection and requeued (reason `stale`)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command

from pipeline.choices import DocumentStatus
from pipeline.models import Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from reprocessing.staleness import detect_stale, stale_counts
from tests.tools import collected

pytestmark = pytest.mark.django_db


def stale_requeues() -> float:
    return collected("pipeline_reprocessing_total", reason="stale")


@pytest.fixture
def touched(hash_collection, clock):
    """An embedded document whose source is recorded as modified ten minutes later.

    Enqueueing new text would send it straight back to the queue, and the same text is not a
    change; a source time that moved past the embedding without a new version reaching us (a
    lost producer message, clock skew) is what the sweeper exists to catch.
    """
    enqueue(hash_collection, [IncomingDocument("doc", "some text", clock.now)])
    EmbeddingIngestionPipeline().drain()
    clock.advance(timedelta(minutes=10))
    Document.objects.update(source_modified_at=clock.now)
    doc = Document.objects.get()
    assert doc.status == DocumentStatus.EMBEDDED and doc.source_modified_at > doc.last_embedded_at
    return doc


def test_document_is_stale_only_once_the_freshness_sla_has_passed(touched, clock):
    clock.advance(timedelta(minutes=59))
    assert stale_counts() == {"hashes": 0}
    assert detect_stale().requeued == 0
    clock.advance(timedelta(minutes=2))
    assert stale_counts() == {"hashes": 1}


def test_stale_document_is_requeued_and_counted(touched, clock):
    before = stale_requeues()
    clock.advance(timedelta(hours=2))
    report = detect_stale()
    assert (report.stale, report.requeued) == ({"hashes": 1}, 1)
    assert Document.objects.get().status == DocumentStatus.PENDING
    assert stale_requeues() - before == 1
    # Still stale until it is embedded again; then fresh.
    assert stale_counts() == {"hashes": 1}
    EmbeddingIngestionPipeline().drain()
    assert stale_counts() == {"hashes": 0}


def test_touching_a_source_without_changing_its_text_does_not_make_it_stale(hash_collection, clock):
    enqueue(hash_collection, [IncomingDocument("doc", "some text", clock.now)])
    EmbeddingIngestionPipeline().drain()
    clock.advance(timedelta(minutes=10))
    assert enqueue(hash_collection, [IncomingDocument("doc", "some text", clock.now)]).unchanged == ["doc"]
    clock.advance(timedelta(hours=2))
    assert stale_counts() == {"hashes": 0}
    assert detect_stale().requeued == 0


def test_collection_sla_decides(touched, clock, hash_collection):
    hash_collection.freshness_sla = timedelta(hours=6)
    hash_collection.save()
    clock.advance(timedelta(hours=2))
    assert stale_counts() == {"hashes": 0}


def test_queued_documents_are_counted_but_not_requeued_again(hash_collection, clock):
    enqueue(hash_collection, [IncomingDocument("never-embedded", "text", clock.now)])
    clock.advance(timedelta(hours=2))
    before = Document.objects.get().enqueued_at
    report = detect_stale()
    assert (report.total, report.requeued) == (1, 0)
    assert Document.objects.get().enqueued_at == before


def test_failed_documents_are_left_to_the_workflow_unless_it_has_no_open_failure(fake_collection, fake_provider, clock):
    fake_provider.mode = "400"
    enqueue(fake_collection, [IncomingDocument(f"d{i}", f"text {i}", clock.now) for i in range(2)])
    EmbeddingIngestionPipeline().drain()
    from reprocessing.choices import Resolution
    from reprocessing.models import FailedDocument

    FailedDocument.objects.filter(document__external_id="d1").resolve(Resolution.OPERATOR, clock.now)
    clock.advance(timedelta(hours=2))
    assert detect_stale().requeued == 1
    assert dict(Document.objects.values_list("external_id", "status")) == {
        "d0": DocumentStatus.FAILED,
        "d1": DocumentStatus.PENDING,
    }


def test_detect_stale_command_dry_run_changes_nothing(touched, clock, capsys):
    clock.advance(timedelta(hours=2))
    call_command("detect_stale", "--dry-run")
    assert "hashes: 1 stale" in capsys.readouterr().out
    assert Document.objects.get().status == DocumentStatus.EMBEDDED
    call_command("detect_stale")
    assert "requeued 1" in capsys.readouterr().out
    assert Document.objects.get().status == DocumentStatus.PENDING
