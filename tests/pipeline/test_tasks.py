from __future__ import annotations

import pytest
from django_q.models import OrmQ, Schedule

from pipeline.choices import DocumentStatus
from pipeline.models import Document
from pipeline.queue import IncomingDocument, enqueue
from pipeline.tasks import DRAIN_TASK, ensure_schedules
from tests.conftest import manage


@pytest.mark.django_db(transaction=True)
def test_django_q_worker_drains_the_queue_after_enqueue(hash_collection):
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"text number {i}") for i in range(12)])
    assert OrmQ.objects.exists(), "enqueue kicks a drain task after commit"

    worker = manage("qcluster", "--run-once")
    assert worker.wait(timeout=180) == 0

    assert Document.objects.filter(status=DocumentStatus.EMBEDDED).count() == 12


@pytest.mark.django_db
def test_schedule_registration_is_idempotent():
    ensure_schedules()
    ensure_schedules()
    assert Schedule.objects.filter(func=DRAIN_TASK).count() == 1
