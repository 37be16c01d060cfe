"""Model (provider) and quality faults, driven through LiteLLM over HTTP to the fake provider."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipeline.choices import DocumentStatus, ErrorType
from pipeline.models import Chunk, Document
from pipeline.pipeline import EmbeddingIngestionPipeline, RetryPolicy
from pipeline.queue import IncomingDocument, enqueue
from reprocessing.models import FailedDocument

pytestmark = pytest.mark.django_db


def worker(waits: list[float], **kwargs: int) -> EmbeddingIngestionPipeline:
    """A pipeline that records its in-batch backoff waits instead of sleeping them."""
    return EmbeddingIngestionPipeline(retry=RetryPolicy.from_settings(sleep=waits.append), **kwargs)


def add(collection, *texts: str) -> None:
    enqueue(collection, [IncomingDocument(f"d{i}", text) for i, text in enumerate(texts)])


def failure_of(external_id: str) -> FailedDocument:
    return FailedDocument.objects.get(document__external_id=external_id)


def test_transient_provider_error_is_retried_within_the_batch(fake_collection, fake_provider, waits):
    fake_provider.script = ["500", "500"]
    add(fake_collection, "first", "second")
    report = worker(waits).drain()
    assert report.embedded == 2 and report.failed == 0
    assert report.errors == {ErrorType.API_ERROR: 2}
    assert waits == [1.0, 2.0]  # exponential from EMBEDPORTAL_RETRY_BASE_SECONDS
    assert not FailedDocument.objects.exists()


def test_persistent_500_defers_the_batch_after_bounded_tries_without_failing_it(
    fake_collection, fake_provider, waits, clock
):
    fake_provider.mode = "500"
    add(fake_collection, "only one", "and another")
    report = worker(waits).drain()
    assert len(fake_provider.requests) == 3 and waits == [1.0, 2.0]
    assert (report.deferred, report.failed, report.embedded) == (2, 0, 0)
    for doc in Document.objects.all():
        # Back in the queue after the next backoff step (1 s x 2^3), no lease, not failed.
        assert (doc.status, doc.attempts, doc.lease_owner) == (DocumentStatus.PENDING, 1, "")
        assert doc.available_at == clock.now + timedelta(seconds=8)
        assert doc.last_error.startswith("deferred: api_error")
    assert not FailedDocument.objects.exists()


def test_a_500_from_one_input_is_split_out_once_its_batch_was_deferred_max_times(
    fake_collection, fake_provider, waits, settings
):
    # The provider answers other batches (its circuit stays closed), so after
    # EMBEDPORTAL_MAX_DEFERRALS deferrals the batch is split and the bad input fails alone.
    settings.EMBEDPORTAL_MAX_DEFERRALS = 2
    settings.EMBEDPORTAL_CIRCUIT_FAILURES = 1000
    texts = [f"good document {i}" for i in range(7)]
    texts.insert(3, "bad document POISON:500 here")
    add(fake_collection, *texts)
    pipeline = EmbeddingIngestionPipeline(claim_batch=8, retry=RetryPolicy.from_settings(base_seconds=0, max_wait=0))
    report = pipeline.drain()
    assert report.deferred == 16 and report.embedded == 7 and report.failed == 1
    assert set(FailedDocument.objects.values_list("document__external_id", "error_type")) == {
        ("d3", ErrorType.API_ERROR)
    }
    assert Document.objects.filter(status=DocumentStatus.EMBEDDED).count() == 7


def test_rate_limit_waits_for_retry_after(fake_collection, fake_provider, waits, settings):
    settings.EMBEDPORTAL_RETRY_MAX_WAIT = 30
    fake_provider.retry_after = "7"
    fake_provider.script = ["429"]
    add(fake_collection, "rate limited once")
    report = worker(waits).drain()
    assert report.embedded == 1
    assert waits == [7.0]


def test_a_retry_after_longer_than_a_batch_may_wait_defers_it_at_once_for_all_of_it(
    fake_collection, fake_provider, waits, settings, clock
):
    settings.EMBEDPORTAL_RETRY_MAX_WAIT = 2
    fake_provider.retry_after = "900"
    fake_provider.mode = "429"
    add(fake_collection, "a", "b", "c")
    worker(waits).drain()
    # It was tried twice more after the capped 2 s, both tries bound to fail, before being deferred.
    assert waits == []
    # A rate limit concerns the whole call: the batch is not split into more calls.
    assert len(fake_provider.requests) == 1
    assert not FailedDocument.objects.exists()
    # A deferred batch holds no worker: it waits out the provider's 15 minutes in the queue.
    assert set(Document.objects.values_list("status", "available_at")) == {
        (DocumentStatus.PENDING, clock.now + timedelta(seconds=900))
    }


def test_timeout_is_classified_and_retried(fake_collection, fake_provider, waits, settings):
    settings.EMBEDPORTAL_EMBED_TIMEOUT = 0.3
    fake_provider.mode = "timeout"
    add(fake_collection, "slow one")
    report = worker(waits).drain()
    assert report.errors == {ErrorType.TIMEOUT: 3}
    assert report.deferred == 1
    assert Document.objects.get().last_error.startswith("deferred: timeout")


def test_auth_error_fails_at_once_and_the_key_is_scrubbed(fake_collection, fake_provider, waits):
    fake_provider.mode = "401"
    add(fake_collection, "a", "b", "c")
    report = worker(waits).drain()
    assert len(fake_provider.requests) == 1 and waits == []
    assert report.failed == 3
    failure = failure_of("d0")
    assert failure.error_type == ErrorType.AUTH
    assert "sk-test-secret-123456" not in failure.message and "[redacted]" in failure.message
    assert "sk-test-secret-123456" not in Document.objects.get(external_id="d0").last_error


# The fake provider's modes whose answer no retry can fix, and the error type each must fail as.
PERMANENT = [
    ("wrong_dims", ErrorType.DIMENSION_MISMATCH),
    ("nan", ErrorType.NAN_VALUES),
    ("zero", ErrorType.ZERO_VECTOR),
    ("too_few", ErrorType.WRONG_COUNT),
    ("no_data", ErrorType.WRONG_COUNT),  # was a TypeError: every drain task, the health check and search a 500
    ("400", ErrorType.BAD_REQUEST),
]


@pytest.mark.parametrize(("mode", "error_type"), PERMANENT)
def test_permanent_error_fails_the_document_without_retrying(fake_collection, fake_provider, waits, mode, error_type):
    fake_provider.mode = mode
    add(fake_collection, "one document")
    worker(waits).drain()
    assert len(fake_provider.requests) == 1 and waits == []
    assert failure_of("d0").error_type == error_type
    assert not Chunk.objects.exists()


@pytest.mark.parametrize(("mode", "error_type"), PERMANENT)
def test_poison_document_fails_alone_and_its_batch_neighbours_are_stored(
    fake_collection, fake_provider, waits, mode, error_type, caplog
):
    texts = [f"good document {i}" for i in range(7)]
    texts.insert(3, f"bad document POISON:{mode} here")
    add(fake_collection, *texts)
    report = worker(waits, claim_batch=8).drain()
    assert report.embedded == 7 and report.failed == 1
    # The log names it as operators know it: its id and collection (it said "document 4 failed").
    assert f"document 'd3' of {fake_collection.name} (id " in caplog.text
    assert set(FailedDocument.objects.values_list("document__external_id", "error_type")) == {("d3", error_type)}
    embedded = Document.objects.filter(status=DocumentStatus.EMBEDDED)
    assert embedded.count() == 7
    assert Chunk.objects.filter(document__in=embedded).count() == 7
    assert not Chunk.objects.filter(document__external_id="d3").exists()
