"""The failed-documents admin: filters and the actions, through admin_client."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User

from pipeline.choices import DocumentStatus, ErrorType, Stage
from pipeline.embedding import PipelineError
from pipeline.models import Document
from pipeline.queue import IncomingDocument, enqueue
from reprocessing.choices import FailureState
from reprocessing.failures import record_failure
from reprocessing.models import FailedDocument

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
    response = admin_client.post(URL, {"action": "retry_now", "_selected_action": [f.pk for f in failed]}, follow=True)
    assert "Requeued 2 document(s); 0 skipped" in response.content.decode()
    assert set(FailedDocument.objects.values_list("state", "next_retry_at")) == {(FailureState.OPEN, None)}
    assert set(Document.objects.values_list("status", flat=True)) == {DocumentStatus.PENDING}


def test_dead_letter_and_resolve_actions(admin_client, failed):
    first = failed[0]
    admin_client.post(URL, {"action": "dead_letter", "_selected_action": [first.pk]}, follow=True)
    assert FailedDocument.objects.get(pk=first.pk).state == FailureState.DEAD_LETTERED
    response = admin_client.post(URL, {"action": "resolve", "_selected_action": [first.pk]}, follow=True)
    assert "Resolved 1 failure(s)." in response.content.decode()
    assert FailedDocument.objects.get(pk=first.pk).resolution == "operator"


def test_failure_page_is_read_only(admin_client, failed):
    page = admin_client.get(f"{URL}{failed[0].pk}/change/").content.decode()
    assert "timeout" in page and "boom" in page
    assert 'name="state"' not in page and 'name="_save"' not in page


def test_actions_are_offered_only_with_their_permission(client, failed):
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_faileddocument"))
    client.force_login(user)
    response = client.get(URL)
    assert len(response.context["cl"].result_list) == 2
    page = response.content.decode()
    assert 'value="retry_now"' not in page and 'value="dead_letter"' not in page
