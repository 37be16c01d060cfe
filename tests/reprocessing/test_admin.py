"""The failed-documents admin: filters and the actions, through admin_client."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipeline.choices import DocumentStatus, ErrorType, Stage
from pipeline.embedding import PipelineError
from pipeline.models import Document
from pipeline.queue import IncomingDocument, enqueue
from reprocessing.choices import FailureState
from reprocessing.failures import record_failure
from reprocessing.models import FailedDocument
from tests.tools import run_action, user_with

pytestmark = pytest.mark.django_db
URL = "/admin/reprocessing/faileddocument/"


@pytest.fixture
def failed(hash_collection, clock):
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"text {i}") for i in range(2)])
    Document.objects.update(status=DocumentStatus.FAILED)
    for i, doc in enumerate(hash_collection.documents.order_by("external_id")):
        kind = (ErrorType.TIMEOUT, ErrorType.DISK_FULL)[i]
        record_failure(doc.pk, PipelineError(kind, Stage.EMBEDDING, "boom"), "boom")
        clock.advance(timedelta(days=5))  # d0 is 10 days old, d1 5 days
    return FailedDocument.objects.order_by("document__external_id")


def test_changelist_filters_by_type_and_age(admin_client, failed):
    def shown(**params: str) -> list[str]:
        cl = admin_client.get(URL, params).context["cl"]
        return [f.document.external_id for f in cl.result_list]

    assert shown(error_type="timeout") == ["d0"]
    assert shown(age="older") == ["d0"]
    assert shown(age="7d") == ["d1"]
    assert shown(age="1h") == []


def test_retry_action_requeues_and_reports(admin_client, failed):
    messages = run_action(admin_client, URL, "retry_now", [f.pk for f in failed])
    assert messages == ["Requeued 2 document(s); 0 skipped (requeued or resolved already)."]
    assert set(FailedDocument.objects.values_list("state", "next_retry_at")) == {(FailureState.OPEN, None)}
    assert set(Document.objects.values_list("status", flat=True)) == {DocumentStatus.PENDING}


def test_retry_on_a_filtered_list_counts_the_selection_before_requeueing(admin_client, failed):
    # Requeued, dead-lettered failures are open again: they leave the filter the action's rows were chosen by.
    failed.dead_letter()
    messages = run_action(admin_client, f"{URL}?state__exact=dead_lettered", "retry_now", [f.pk for f in failed])
    assert messages == ["Requeued 2 document(s); 0 skipped (requeued or resolved already)."]


def test_dead_letter_and_resolve_actions(admin_client, failed):
    first = failed[0]
    run_action(admin_client, URL, "dead_letter", [first.pk])
    assert FailedDocument.objects.get(pk=first.pk).state == FailureState.DEAD_LETTERED
    assert run_action(admin_client, URL, "resolve", [first.pk]) == ["Resolved 1 failure(s)."]
    assert FailedDocument.objects.get(pk=first.pk).resolution == "operator"


def test_failure_page_is_read_only(admin_client, failed):
    page = admin_client.get(f"{URL}{failed[0].pk}/change/").content.decode()
    assert "timeout" in page and "boom" in page
    assert 'name="state"' not in page and 'name="_save"' not in page


def test_actions_are_offered_only_with_their_permission(client, failed):
    client.force_login(user_with("view_faileddocument", app="reprocessing", is_staff=True))
    response = client.get(URL)
    assert len(response.context["cl"].result_list) == 2
    page = response.content.decode()
    assert 'value="retry_now"' not in page and 'value="dead_letter"' not in page
