"""Provider calls take a batch's chunks shortest first (less padding for a local model); every
chunk still gets its own vector."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.models import Chunk
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.providers import hash_vectors
from pipeline.queue import IncomingDocument, enqueue


@pytest.mark.django_db
def test_calls_are_sorted_by_length_and_each_chunk_keeps_its_own_vector(fake_collection, fake_provider):
    # Lengths out of order, across documents: 150, 20, 90, 60, 130, 40 characters.
    texts = ["x" * 150, "short one", "m" * 90, "n" * 60, "o" * 130, "p" * 40]
    enqueue(fake_collection, [IncomingDocument(f"d{i}", t) for i, t in enumerate(texts)])

    assert EmbeddingIngestionPipeline(claim_batch=6).run_once().embedded == 6

    sent = [text for request in fake_provider.requests for text in request["inputs"]]
    assert sent == sorted(sent, key=len) and sorted(sent) == sorted(texts)
    assert [len(r["inputs"]) for r in fake_provider.requests] == [4, 2]  # the collection's batch size
    for chunk in Chunk.objects.filter(collection=fake_collection):
        np.testing.assert_allclose(np.array(chunk.embedding), hash_vectors([chunk.text], 8)[0], rtol=1e-6)
