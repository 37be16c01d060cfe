"""Reserved scratch collections (operations tests, capacity runs) stay out of the shared pipeline
metrics (reprocessing's included) and the history: a fault an operations test injects must not fire
a real alert. Real HTTP to a local fake provider through LiteLLM; the process's real
prometheus_client registry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from pipeline import history
from pipeline.choices import DocumentStatus
from pipeline.models import BatchTiming, Collection, CollectionActivity, Document, reserved_names
from pipeline.pipeline import EmbeddingIngestionPipeline, RetryPolicy
from pipeline.queue import IncomingDocument, enqueue
from reprocessing import failures
from reprocessing.models import FailedDocument
from tests.factories import fake_backed as outage_collection
from tests.tools import collected

pytestmark = pytest.mark.django_db

COUNTERS = ("embedding_pipeline_errors_total", "embedding_pipeline_documents_processed_total")


def totals() -> dict[str, float]:
    """Each counter summed over its labels, as an alert's sum(rate(...)) sees it."""
    sums = dict.fromkeys(COUNTERS, 0.0)
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name in sums:
                sums[sample.name] += sample.value
    return sums


def fake_backed(name: str, api_base: str) -> Collection:
    """The outage tests' fake-provider collection, reserved names allowed."""
    with reserved_names():
        return outage_collection(name, api_base)


def run_one_good_one_poisoned(collection: Collection) -> None:
    enqueue(collection, [IncomingDocument("good", "a fine text"), IncomingDocument("bad", "POISON:400 refused")])
    EmbeddingIngestionPipeline(retry=RetryPolicy.from_settings(sleep=lambda s: None)).drain()
    statuses = dict(Document.objects.filter(collection=collection).values_list("external_id", "status"))
    assert statuses == {"good": DocumentStatus.EMBEDDED, "bad": DocumentStatus.FAILED}


@pytest.mark.parametrize("name", ["__ops_test_1_1_fault", "__capacity_scratch"])
def test_a_reserved_collections_failure_moves_no_counter_while_a_user_collections_does(
    fake_provider, monkeypatch, name
):
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-test")
    reserved, user = fake_backed(name, fake_provider.api_base), fake_backed("user-docs", fake_provider.api_base)
    assert reserved.is_reserved and not user.is_reserved

    before = totals()
    run_one_good_one_poisoned(reserved)
    assert totals() == before
    # Its retry (the operations tests run the workflow on their own failures) is not user reprocessing.
    requeued = collected("pipeline_reprocessing_total", reason="bad_request")
    assert failures.retry(FailedDocument.objects.filter(document__collection=reserved)) == {"bad_request": 1}
    assert collected("pipeline_reprocessing_total", reason="bad_request") == requeued
    # Arrivals (written by enqueue) and queue depth samples stay: activity.totals() leaves reserved
    # collections out. The workers' outcomes are not written at all.
    assert [(a.embedded, a.failed) for a in CollectionActivity.objects.filter(collection=reserved)] in ([], [(0, 0)])
    assert not BatchTiming.objects.filter(collection=reserved).exists()

    run_one_good_one_poisoned(user)
    after = totals()
    assert after["embedding_pipeline_errors_total"] > before["embedding_pipeline_errors_total"]
    # The good document embedded and the poisoned one failed: two outcomes at least.
    assert (
        after["embedding_pipeline_documents_processed_total"]
        >= before["embedding_pipeline_documents_processed_total"] + 2
    )
    assert failures.retry(FailedDocument.objects.filter(document__collection=user)) == {"bad_request": 1}
    assert collected("pipeline_reprocessing_total", reason="bad_request") == requeued + 1
    history.roll_up_batches(timezone.now() + timedelta(minutes=1))
    activity = CollectionActivity.objects.filter(collection=user)
    assert sum(a.failed for a in activity) == 1 and sum(a.embedded for a in activity) == 1
    assert BatchTiming.objects.filter(collection=user).exists()
