"""ReprocessingWorkflow: the backoff schedule, dead letter, resolution, and its entry points."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.utils import timezone
from prometheus_client import REGISTRY

from pipeline.choices import DocumentStatus, ErrorType, Stage
from pipeline.models import Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from reprocessing import failures
from reprocessing.choices import FailureState, Resolution
from reprocessing.models import FailedDocument
from reprocessing.workflow import ReprocessingWorkflow

pytestmark = pytest.mark.django_db


def reprocessed(reason: str) -> float:
    return REGISTRY.get_sample_value("pipeline_reprocessing_total", {"reason": reason}) or 0.0


@pytest.fixture
def failing(fake_collection, fake_provider, clock):
    """One document the provider keeps refusing (400), failed once by the pipeline."""
    fake_provider.mode = "400"
    enqueue(fake_collection, [IncomingDocument("doc", "a document the provider rejects")])
    EmbeddingIngestionPipeline().drain()
    return Document.objects.get(external_id="doc")


def test_backoff_is_5m_30m_2h_24h_then_dead_letter(failing, clock):
    workflow = ReprocessingWorkflow()
    before = reprocessed(ErrorType.BAD_REQUEST)
    for step in (timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2), timedelta(hours=24)):
        failure = FailedDocument.objects.get()
        assert failure.state == FailureState.WAITING
        assert failure.next_retry_at - failure.last_failed_at == step
        clock.advance(step - timedelta(seconds=1))
        assert workflow.run_once().due == 0, "retried before its backoff ended"
        clock.advance(timedelta(seconds=1))
        assert workflow.run_once().retried == {ErrorType.BAD_REQUEST: 1}
        assert FailedDocument.objects.get().state == FailureState.RETRYING
        assert Document.objects.get().status == DocumentStatus.PENDING
        EmbeddingIngestionPipeline().drain()  # fails again

    failure = FailedDocument.objects.get()
    assert (failure.state, failure.attempts, failure.next_retry_at) == (FailureState.DEAD_LETTERED, 5, None)
    assert failure.first_failed_at < failure.last_failed_at
    clock.advance(timedelta(days=365))
    assert workflow.run_once().due == 0
    assert Document.objects.get().status == DocumentStatus.FAILED
    assert reprocessed(ErrorType.BAD_REQUEST) - before == 4


def test_reprocessed_document_resolves_its_failure(failing, fake_provider, clock):
    fake_provider.mode = "ok"
    clock.advance(timedelta(minutes=5))
    ReprocessingWorkflow().run_once()
    EmbeddingIngestionPipeline().drain()
    failure = FailedDocument.objects.get()
    assert (failure.state, failure.resolution, failure.resolved_at) == (
        FailureState.RESOLVED,
        Resolution.REPROCESSED,
        clock.now,
    )
    assert Document.objects.get().status == DocumentStatus.EMBEDDED


def test_failing_again_after_resolution_opens_a_new_row(failing, fake_provider, clock):
    FailedDocument.objects.resolve(Resolution.OPERATOR, clock.now)
    Document.objects.filter(pk=failing.pk).requeue()
    EmbeddingIngestionPipeline().drain()
    assert FailedDocument.objects.filter(state=FailureState.RESOLVED).count() == 1
    assert FailedDocument.objects.open().get().attempts == 1


def test_only_one_open_failure_per_document(failing):
    now = timezone.now()
    with pytest.raises(IntegrityError), transaction.atomic():
        FailedDocument.objects.create(
            document=failing, error_type=ErrorType.API_ERROR, stage=Stage.EMBEDDING,
            first_failed_at=now, last_failed_at=now, next_retry_at=now,
        )  # fmt: skip


def test_transitions_are_compare_and_swap(failing):
    rows = FailedDocument.objects.all()
    assert sum(failures.retry(rows).values()) == 1
    assert failures.retry(rows) == {}  # the loser of a race changes nothing
    assert rows.dead_letter() == 0  # retrying rows are not dead-lettered
    assert rows.resolve(Resolution.OPERATOR, timezone.now()) == 1
    assert rows.resolve(Resolution.OPERATOR, timezone.now()) == 0


def test_workflow_resolves_failures_whose_document_was_embedded_meanwhile(failing, clock):
    clock.advance(timedelta(minutes=1))
    Document.objects.filter(pk=failing.pk).update(status=DocumentStatus.EMBEDDED, last_embedded_at=clock.now)
    assert ReprocessingWorkflow().run_once().reconciled == 1
    assert FailedDocument.objects.get().resolution == Resolution.REPROCESSED


def test_reprocess_failed_command_once_and_dry_run(failing, clock, capsys):
    clock.advance(timedelta(minutes=6))
    call_command("reprocess_failed", "--dry-run")
    assert "1 failed document(s) due" in capsys.readouterr().out
    assert FailedDocument.objects.get().state == FailureState.WAITING
    call_command("reprocess_failed", "--once")
    assert "Requeued 1 failed document(s) (bad_request 1)" in capsys.readouterr().out
    assert FailedDocument.objects.get().state == FailureState.RETRYING


def test_scheduled_task_runs_a_workflow_pass(failing, clock):
    from reprocessing.tasks import reprocess_failed

    clock.advance(timedelta(minutes=5))
    assert reprocess_failed()["retried_by_type"] == {"bad_request": 1}
