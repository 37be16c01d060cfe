"""ReprocessingWorkflow: retry failed documents on the 5 min / 30 min / 2 h / 24 h backoff
(notes: docs/architecture.md, "Module notes")."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from pipeline.models import Collection
from reprocessing import failures, metrics
from reprocessing.models import FailedDocument

logger = logging.getLogger(__name__)


@dataclass
class WorkflowReport:
    due: int = 0
    retried: Counter[str] = field(default_factory=Counter)
    dry_run: bool = False

    def as_dict(self) -> dict:
        return {
            "due": self.due,
            "retried": sum(self.retried.values()),
            "retried_by_type": dict(self.retried),
            "dry_run": self.dry_run,
        }


class ReprocessingWorkflow:
    """One pass requeues every due failure, in batches of `batch_size` rows per transaction."""

    def __init__(self, batch_size: int | None = None, collection: Collection | None = None) -> None:
        self.batch_size = batch_size or settings.EMBEDPORTAL_REPROCESS_BATCH
        # Scoped runs (benchmark_failures on a shared database) touch only their collection.
        self.collection = collection

    @metrics.timed_pass(metrics.REPROCESSING_PASS)
    def run_once(self, now: datetime | None = None, dry_run: bool = False) -> WorkflowReport:
        now = now or timezone.now()
        report = WorkflowReport(dry_run=dry_run)
        due = FailedDocument.objects.due(now).order_by("next_retry_at", "id")
        if self.collection is not None:
            due = due.filter(document__collection=self.collection)
        if dry_run:
            report.due = due.count()
            return report
        while batch := failures.retry(due[: self.batch_size], now):
            report.due += sum(batch.values())
            report.retried.update(batch)
        if report.retried:
            logger.info("reprocessing: requeued %s", dict(report.retried))
        return report
