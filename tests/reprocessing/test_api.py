"""/api/v1/failures/: list and filter, retry, dead-letter, resolve, bulk retry by type."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from pipeline.choices import DocumentStatus, ErrorType, Stage
from pipeline.embedding import PipelineError
from pipeline.models import Document
from pipeline.queue import IncomingDocument, enqueue
from reprocessing.failures import record_failure
from reprocessing.models import FailedDocument
from tests import tools

pytestmark = pytest.mark.django_db


client_with = partial(tools.client_with, app="reprocessing")


@pytest.fixture
def failed(hash_collection, clock):
    """Three failed documents: two rate-limited (one a day old), one with a NaN vector."""
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"text {i}") for i in range(3)])
    docs = list(hash_collection.documents.order_by("external_id"))
    Document.objects.update(status=DocumentStatus.FAILED)
    record_failure(docs[0].pk, PipelineError(ErrorType.RATE_LIMIT, Stage.EMBEDDING, "429"), "429")
    clock.advance(timedelta(days=1))
    record_failure(docs[1].pk, PipelineError(ErrorType.RATE_LIMIT, Stage.EMBEDDING, "429"), "429")
    record_failure(docs[2].pk, PipelineError(ErrorType.NAN_VALUES, Stage.EMBEDDING, "nan"), "nan")
    return docs


def test_reads_need_authentication_and_the_view_permission(failed):
    assert APIClient().get("/api/v1/failures/").status_code in (401, 403)
    response = client_with().get("/api/v1/failures/")
    assert response.status_code == 403
    assert response.json()["error"]["status"] == 403


def test_list_filters_by_type_state_and_age(failed):
    client = client_with("view_faileddocument")
    ids = lambda **q: sorted(r["external_id"] for r in client.get("/api/v1/failures/", q).json()["results"])  # noqa: E731
    assert ids() == ["d0", "d1", "d2"]
    assert ids(error_type="rate_limit") == ["d0", "d1"]
    assert ids(error_type="rate_limit", min_age=3600) == ["d0"]
    assert ids(max_age=3600) == ["d1", "d2"]
    assert ids(state="dead_lettered") == []
    assert ids(state="open") == ["d0", "d1", "d2"]


def test_bad_filter_says_what_to_fix(failed):
    response = client_with("view_faileddocument").get("/api/v1/failures/", {"error_type": "gremlins"})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("error_type:")


@pytest.mark.parametrize("name", ["min_age", "max_age"])
def test_an_age_longer_than_a_date_can_go_back_is_a_400_not_a_500(failed, name):
    """now - 10**20 seconds is before year 1: timedelta raised OverflowError (a 500)."""
    client = client_with("view_faileddocument")
    for age in ("100000000000000000000", "3155760001"):
        error = tools.error_of(client.get("/api/v1/failures/", {name: age}), 400)
        assert error["message"] == f"{name}: Ensure this value is less than or equal to 3155760000.", error
    assert len(client.get("/api/v1/failures/", {name: "3155760000"}).json()["results"]) == (
        3 if name == "max_age" else 0
    )


def test_actions_need_their_permission(failed):
    client = client_with("view_faileddocument")
    pk = FailedDocument.objects.first().pk
    assert client.post(f"/api/v1/failures/{pk}/retry/").status_code == 403
    assert client.post(f"/api/v1/failures/{pk}/resolve/").status_code == 403
    assert client.post("/api/v1/failures/retry/", {"error_type": "rate_limit"}).status_code == 403
    assert FailedDocument.objects.due(timezone.now() + timedelta(days=1)).count() == 3


def test_retry_now_requeues_and_a_second_retry_conflicts(failed):
    client = client_with("retry_faileddocument")
    failure = FailedDocument.objects.get(document=failed[2])
    response = client.post(f"/api/v1/failures/{failure.pk}/retry/")
    assert response.status_code == 200 and response.json() == {"retried": 1, "by_type": {"nan_values": 1}}
    assert Document.objects.get(pk=failed[2].pk).status == DocumentStatus.PENDING
    again = client.post(f"/api/v1/failures/{failure.pk}/retry/")
    assert again.status_code == 409
    assert "requeued" in again.json()["error"]["message"]


def test_bulk_retry_by_error_type(failed):
    response = client_with("retry_faileddocument").post(
        "/api/v1/failures/retry/", {"error_type": "rate_limit"}, format="json"
    )
    assert response.json() == {"retried": 2, "by_type": {"rate_limit": 2}}
    assert sorted(Document.objects.filter(status=DocumentStatus.PENDING).values_list("external_id", flat=True)) == [
        "d0",
        "d1",
    ]


def test_bulk_retry_rejects_an_unknown_type(failed):
    response = client_with("retry_faileddocument").post("/api/v1/failures/retry/", {"error_type": "x"}, format="json")
    assert response.status_code == 400
    assert "error_type" in response.json()["error"]["message"]


def test_dead_letter_and_resolve(failed):
    client = client_with("resolve_faileddocument")
    pk = FailedDocument.objects.get(document=failed[0]).pk
    assert client.post(f"/api/v1/failures/{pk}/dead-letter/").json()["state"] == "dead_lettered"
    assert client.post(f"/api/v1/failures/{pk}/dead-letter/").status_code == 409
    body = client.post(f"/api/v1/failures/{pk}/resolve/").json()
    assert (body["state"], body["resolution"]) == ("resolved", "operator")
    assert client.post(f"/api/v1/failures/{pk}/resolve/").status_code == 409
