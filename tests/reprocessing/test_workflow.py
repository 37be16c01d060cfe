"""ReprocessingWorkflow: the backoff schedule, dead letter, resolution, and its entry points."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from pipeline.choices import DocumentStatus, ErrorType, Stage
from pipeline.embedding import PipelineError
from pipeline.models import Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from reprocessing import failures
from reprocessing.choices import FailureState, Resolution
from reprocessing.models import FailedDocument
from reprocessing.workflow import ReprocessingWorkflow
from tests.conftest import wait_for
from tests.tools import collected, lock_waiters

pytestmark = pytest.mark.django_db


def reprocessed(reason: str) -> float:
    return collected("pipeline_reprocessing_total", reason=reason)


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
        assert failure.state == FailureState.OPEN
        assert failure.next_retry_at - failure.last_failed_at == step
        clock.advance(step - timedelta(seconds=1))
        assert workflow.run_once().due == 0, "retried before its backoff ended"
        clock.advance(timedelta(seconds=1))
        assert workflow.run_once().retried == {ErrorType.BAD_REQUEST: 1}
        assert (FailedDocument.objects.get().state, FailedDocument.objects.get().next_retry_at) == (
            FailureState.OPEN,
            None,
        )
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
    assert FailedDocument.objects.unresolved().get().attempts == 1


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
    assert rows.dead_letter() == 0  # requeued rows are not dead-lettered
    assert rows.resolve(Resolution.OPERATOR, timezone.now()) == 1
    assert rows.resolve(Resolution.OPERATOR, timezone.now()) == 0


@pytest.mark.parametrize("existing", [False, True])
@pytest.mark.django_db(transaction=True)
def test_concurrent_failures_of_one_document_keep_one_row_and_every_attempt(hash_collection, existing):
    """Worker A has recorded a failure but not committed; worker B records one for the same document."""
    enqueue(hash_collection, [IncomingDocument("doc", "text")])
    doc = Document.objects.get()
    error = PipelineError(ErrorType.API_ERROR, Stage.EMBEDDING, "boom")
    if existing:
        failures.record_failure(doc.pk, error, "earlier")
    recorded, release, errors = threading.Event(), threading.Event(), []

    def worker(message: str, hold: bool) -> None:
        try:
            with transaction.atomic():
                failures.record_failure(doc.pk, error, message)
                recorded.set()
                if hold:
                    release.wait(10)
        except Exception as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)
        finally:
            connection.close()

    a = threading.Thread(target=worker, args=("a", True))
    a.start()
    assert recorded.wait(10)
    b = threading.Thread(target=worker, args=("b", False))
    b.start()
    # B waits on A's row lock (an existing row) or A's uncommitted insert (the unique index).
    wait_for(lock_waiters)
    release.set()
    for thread in (a, b):
        thread.join(10)
    assert errors == []
    failure = FailedDocument.objects.get()
    assert (failure.attempts, failure.message) == (2 + existing, "b")
    assert failure.next_retry_at == failure.last_failed_at + failures.BACKOFF[1 + existing]


def test_reprocess_failed_command_once_and_dry_run(failing, clock, capsys):
    clock.advance(timedelta(minutes=6))
    call_command("reprocess_failed", "--dry-run")
    assert "1 failed document(s) due" in capsys.readouterr().out
    assert FailedDocument.objects.get().next_retry_at is not None
    call_command("reprocess_failed")  # one pass, then it returns
    assert "Requeued 1 failed document(s) (bad_request 1)." in capsys.readouterr().out
    assert FailedDocument.objects.get().next_retry_at is None
    call_command("reprocess_failed", "--once")  # the CronWorkflow's flag is still accepted
    assert "Requeued 0 failed document(s) (none)." in capsys.readouterr().out


def test_scheduled_task_runs_a_workflow_pass(failing, clock):
    from reprocessing.tasks import reprocess_failed

    clock.advance(timedelta(minutes=5))
    assert reprocess_failed()["retried_by_type"] == {"bad_request": 1}
