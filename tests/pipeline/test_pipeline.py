from __future__ import annotations

import numpy as np
import pytest

from pipeline.choices import DocumentStatus
from pipeline.models import Chunk, Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue

pytestmark = pytest.mark.django_db


def test_pipeline_embeds_and_stores_every_chunk(hash_collection):
    enqueue(hash_collection, [IncomingDocument(f"doc-{i}", f"Paragraph {i}. " * 80) for i in range(5)])
    report = EmbeddingIngestionPipeline().drain()
    assert report.embedded == 5
    assert set(Document.objects.values_list("status", flat=True)) == {DocumentStatus.EMBEDDED}
    chunks = Chunk.objects.filter(collection=hash_collection)
    assert chunks.count() == report.chunks > 5
    assert all(len(c.embedding) == 16 for c in chunks)
    assert all(Document.objects.filter(last_embedded_at__isnull=False).values_list("pk", flat=True))


def test_batches_cross_documents_up_to_collection_batch_size(fake_collection, fake_provider):
    enqueue(fake_collection, [IncomingDocument(f"d{i}", f"short text {i}") for i in range(10)])
    EmbeddingIngestionPipeline().drain()
    sizes = [len(r["inputs"]) for r in fake_provider.requests]
    assert sizes == [4, 4, 2]
    assert fake_provider.requests[0]["auth"] == "Bearer sk-test-secret-123456"
    stored = np.array(Chunk.objects.get(document__external_id="d0").embedding)
    assert stored.shape == (8,)
