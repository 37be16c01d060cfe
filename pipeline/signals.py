"""The pipeline's signals, and its own receivers (each collection owns a partial HNSW index
over the shared chunk table).

Apps built on the pipeline (reprocessing) listen here, so the pipeline imports none of them.
Both signals are sent inside the transaction that changes the documents: a receiver's writes
commit or roll back with that change, and a receiver that raises rolls it back.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal, receiver

from pipeline import storage
from pipeline.models import Collection

# A worker failed a document for good: document_id, error (embedding.PipelineError), message
# (already scrubbed of secrets). Sent once per document, after Document.status became failed.
document_failed = Signal()
# A worker stored documents' embeddings: document_ids (the ids it stored), embedded_at.
documents_embedded = Signal()


@receiver(post_save, sender=Collection)
def create_index(sender: type[Collection], instance: Collection, created: bool, **kwargs: Any) -> None:
    if created and not kwargs.get("raw"):
        storage.create_collection_index(instance)


@receiver(post_delete, sender=Collection)
def drop_index(sender: type[Collection], instance: Collection, **kwargs: Any) -> None:
    storage.drop_collection_index(instance)
