from __future__ import annotations

import pytest
from django_q.models import OrmQ
from django_q.tasks import async_task, result

from pipeline.choices import DocumentStatus
from pipeline.models import Document
from pipeline.queue import IncomingDocument, enqueue
from tests.conftest import manage


@pytest.mark.django_db(transaction=True)
def test_django_q_worker_drains_the_queue_after_enqueue(hash_collection):
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"text number {i}") for i in range(12)])
    assert OrmQ.objects.exists(), "enqueue kicks a drain task after commit"

    worker = manage("qcluster", "--run-once")
    assert worker.wait(timeout=180) == 0

    assert Document.objects.filter(status=DocumentStatus.EMBEDDED).count() == 12


@pytest.mark.django_db(transaction=True)
def test_qcluster_workers_share_the_litellm_loaded_before_they_were_forked():
    # Our qcluster loads LiteLLM (~165 MB) once in the cluster's process; a worker that imported
    # it itself would hold a private copy. A task reports what its worker inherited.
    task = async_task("tests.pipeline.qtasks.litellm_origin")

    worker = manage("qcluster", "--run-once")
    assert worker.wait(timeout=180) == 0

    origin = result(task)
    assert origin is not None, "the task did not run"
    assert origin["litellm_loaded"], "LiteLLM was not loaded when the task started"
    assert origin["preloaded_by"] is not None and origin["preloaded_by"] != origin["pid"]
