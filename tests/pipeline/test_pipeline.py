from __future__ import annotations

import numpy as np
import pytest
from django.utils import timezone

from pipeline.choices import DocumentStatus
from pipeline.models import Chunk, Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue

pytestmark = pytest.mark.django_db


def test_pipeline_embeds_and_stores_every_chunk(hash_collection):
    enqueue(hash_collection, [IncomingDocument(f"doc-{i}", f"Paragraph {i}. " * 80) for i in range(5)])
    before = timezone.now()
    report = EmbeddingIngestionPipeline().drain()
    after = timezone.now()
    assert report.embedded == 5
    docs = list(Document.objects.all())
    assert len(docs) == 5
    for doc in docs:
        assert doc.status == DocumentStatus.EMBEDDED, doc.external_id
        assert doc.last_embedded_at is not None, doc.external_id
        assert before <= doc.last_embedded_at <= after, doc.external_id
        assert (doc.lease_owner, doc.lease_expires_at) == ("", None), doc.external_id
    chunks = Chunk.objects.filter(collection=hash_collection)
    assert chunks.count() == report.chunks > 5
    assert all(len(c.embedding) == 16 for c in chunks)


def test_batches_cross_documents_up_to_collection_batch_size(fake_collection, fake_provider):
    enqueue(fake_collection, [IncomingDocument(f"d{i}", f"short text {i}") for i in range(10)])
    EmbeddingIngestionPipeline().drain()
    sizes = [len(r["inputs"]) for r in fake_provider.requests]
    assert sizes == [4, 4, 2]
    assert fake_provider.requests[0]["auth"] == "Bearer sk-test-secret-123456"
    stored = np.array(Chunk.objects.get(document__external_id="d0").embedding)
    assert stored.shape == (8,)
