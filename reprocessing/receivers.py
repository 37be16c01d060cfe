"""Reprocessing's side of the pipeline's signals: failures are recorded and closed in the
pipeline's own transaction (pipeline.signals sends inside it), so a document is never failed
without its failure row, nor embedded with its failure still open."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.dispatch import receiver

from pipeline.embedding import PipelineError
from pipeline.signals import document_failed, documents_embedded
from reprocessing import failures


@receiver(document_failed, dispatch_uid="reprocessing.record_failure")
def record_failure(sender: Any, document_id: int, error: PipelineError, message: str, **kwargs: Any) -> None:
    failures.record_failure(document_id, error, message)


@receiver(documents_embedded, dispatch_uid="reprocessing.resolve_reprocessed")
def resolve_reprocessed(sender: Any, document_ids: Iterable[int], embedded_at: datetime, **kwargs: Any) -> None:
    failures.resolve_reprocessed(document_ids, embedded_at)
