"""The pipeline knows nothing of reprocessing: it sends `document_failed` inside the transaction
that fails a document, and reprocessing's receiver records the failure in that same
transaction, so the failure row and the document's status commit or roll back together."""

from __future__ import annotations

import pytest
from django.db import connection

from pipeline.choices import DocumentStatus
from pipeline.models import Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from pipeline.signals import document_failed
from reprocessing.models import FailedDocument

# Real transactions: what is asserted is what was committed.
pytestmark = pytest.mark.django_db(transaction=True)


class Boom(Exception):
    pass


def test_failure_row_commits_with_the_document_status(fake_collection, fake_provider):
    fake_provider.mode = "400"  # permanent: the document fails at once
    enqueue(fake_collection, [IncomingDocument("bad", "rejected by the provider")])
    seen = []

    def after_reprocessing(sender, document_id, **kwargs):
        # Inside the failing transaction, reprocessing's row is already there with the new status.
        seen.append(
            (
                connection.in_atomic_block,
                Document.objects.get(pk=document_id).status,
                FailedDocument.objects.filter(document_id=document_id).count(),
            )
        )

    document_failed.connect(after_reprocessing)
    try:
        report = EmbeddingIngestionPipeline().drain()
    finally:
        document_failed.disconnect(after_reprocessing)
    assert report.failed == 1
    assert seen == [(True, DocumentStatus.FAILED, 1)]
    doc = Document.objects.get()
    assert doc.status == DocumentStatus.FAILED
    assert FailedDocument.objects.get().document_id == doc.pk


def test_a_receiver_error_rolls_back_both_the_failure_row_and_the_status(fake_collection, fake_provider):
    fake_provider.mode = "400"
    enqueue(fake_collection, [IncomingDocument("bad", "rejected by the provider")])

    def explode(sender, **kwargs):
        raise Boom  # after reprocessing's receiver wrote its row (receivers run in connect order)

    document_failed.connect(explode)
    try:
        with pytest.raises(Boom):
            EmbeddingIngestionPipeline(worker_id="w1").drain()
    finally:
        document_failed.disconnect(explode)
    doc = Document.objects.get()
    # Neither half committed: the document is still leased to the worker, no failure row exists.
    assert (doc.status, doc.lease_owner) == (DocumentStatus.PROCESSING, "w1")
    assert not FailedDocument.objects.exists()
