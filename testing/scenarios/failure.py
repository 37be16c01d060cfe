"""Failure conditions: provider faults, a dead worker's lease, and the reprocessing backoff on an explicit clock."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from embedportal.metrics import multiprocess_dir
from pipeline.choices import DocumentStatus, ErrorType, Stage
from pipeline.models import Chunk, Collection, Document
from reprocessing.choices import FailureState, Resolution
from reprocessing.failures import BACKOFF
from reprocessing.models import FailedDocument
from reprocessing.staleness import stale_counts
from reprocessing.workflow import ReprocessingWorkflow
from testing.choices import Category, Component, Condition
from testing.context import Context
from testing.registry import scenario
from testing.scenarios.shared import fail_document, requeue_candidates, sample, scrape, stale_document


def _failed_with(ctx: Context, collection: Collection, external_id: str, error_type: str) -> FailedDocument:
    """The document failed for good and its failure row carries the expected type."""
    ctx.wait_documents(collection, [external_id], until=[DocumentStatus.FAILED])
    failures = FailedDocument.objects.unresolved().filter(document__collection=collection)
    failure = failures.filter(document__external_id=external_id).first()
    ctx.check(failure is not None, f"{external_id} failed but no failure row was recorded for the ReprocessingWorkflow")
    ctx.check(
        failure.error_type == error_type,
        f"{external_id} was recorded as {failure.error_type}, expected {error_type}: {failure.message[:200]}",
    )
    ctx.check(failure.next_retry_at is not None, f"{external_id}'s failure has no retry scheduled")
    return failure


def _fails_alone(ctx: Context, collection: Collection, external_id: str, error_type: str) -> FailedDocument:
    """Of the collection's documents only `external_id` failed (as `error_type`); the others were embedded."""
    statuses = ctx.wait_documents(collection, until=[DocumentStatus.EMBEDDED, DocumentStatus.FAILED])
    failed = sorted(i for i, s in statuses.items() if s == DocumentStatus.FAILED)
    ctx.check(failed == [external_id], f"failed documents {failed}, expected only {external_id}")
    return _failed_with(ctx, collection, external_id, error_type)


def _fault_scenario(mode: str, error_type: str, transient: bool, **fields: Any):
    def run(ctx: Context) -> dict[str, Any]:
        provider, collection = ctx.fault_collection(mode, mode, **fields)
        ctx.enqueue(collection, [("victim", f"a document meeting a provider answering {mode}")])
        if transient:
            # Provider outages are retried, then the document goes back to the queue with a delay
            # (deferred), not failed: wait for that, and for the error type on the document.
            def deferred() -> bool:
                doc = Document.objects.get(collection=collection)
                return doc.status == DocumentStatus.PENDING and doc.attempts >= 1 and bool(doc.last_error)

            ctx.require_workers()
            in_time = ctx.wait_until(deferred)
            doc = Document.objects.get(collection=collection)
            ctx.check(
                in_time, f"a {mode} was not retried and deferred: the document is {doc.status}, attempts {doc.attempts}"
            )
            ctx.check(
                f"{error_type}:" in doc.last_error,
                f"the deferred document records {doc.last_error[:120]!r}, expected {error_type}",
            )
            seen = len(provider.requests)
            ctx.check(seen >= 2, f"the provider saw {seen} request(s): a transient {mode} was not retried")
        else:
            failure = _failed_with(ctx, collection, "victim", error_type)
            seen = len(provider.requests)
            ctx.check(seen == 1, f"the provider saw {seen} request(s), expected 1: a permanent {mode} was retried")
        if mode == "401":
            # The provider echoed the key it was sent; nothing stored may repeat it.
            key, stored = provider.last_key, failure.message + Document.objects.get(collection=collection).last_error
            ctx.check(key and key not in stored, f"the provider's echo of the key was stored: {stored[:200]}")
        return {"requests": len(provider.requests), "error_type": str(error_type)}

    outcome = "is retried and deferred" if transient else "fails and is scheduled for reprocessing"
    run.__doc__ = f"The provider answers {mode}: the document {outcome} as {error_type}."
    return run


FAULTS = (
    ("provider_5xx_retried_then_deferred", "500", ErrorType.API_ERROR, True, {}),
    ("provider_timeout_retried_then_deferred", "timeout", ErrorType.TIMEOUT, True, {"extra_params": {"timeout": 1}}),
    ("provider_401_not_retried", "401", ErrorType.AUTH, False, {}),
    ("provider_wrong_dimension_refused", "wrong_dims", ErrorType.DIMENSION_MISMATCH, False, {}),
    ("provider_nan_refused", "nan", ErrorType.NAN_VALUES, False, {}),
    ("provider_too_few_vectors_refused", "too_few", ErrorType.WRONG_COUNT, False, {}),
)
for _name, _mode, _type, _transient, _fields in FAULTS:
    scenario(_name, Category.FAILURE, Component.EMBED, timeout=90)(_fault_scenario(_mode, _type, _transient, **_fields))


@scenario("provider_429_retry_after_honoured", Category.FAILURE, Component.EMBED, timeout=60)
def rate_limited(ctx: Context) -> dict[str, Any]:
    """A 429 with Retry-After is waited out (at least that long) and the document is then embedded."""
    provider, collection = ctx.fault_collection("429")
    provider.retry_after = "2"
    provider.script = ["429"]
    ctx.enqueue(collection, [("limited", "a document meeting a rate limit")])
    ctx.wait_documents(collection)
    stamps = [request["at"] for request in provider.requests]
    ctx.check(len(stamps) == 2, f"the provider saw {len(stamps)} request(s), expected the 429 and one retry")
    gap = stamps[1] - stamps[0]
    ctx.check(gap >= 1.8, f"the retry came {gap:.2f} s after the 429, before its Retry-After of 2 s")
    return {"retry_gap_seconds": gap}


@scenario("poison_document_fails_alone", Category.FAILURE, Component.EMBED, covers=[Component.STORE], timeout=90)
def poison(ctx: Context) -> dict[str, Any]:
    """One poisoned document in a batch fails alone (bad_request); its neighbours are embedded."""
    provider, collection = ctx.fault_collection("poison")
    docs = [(f"good-{i}", f"healthy neighbour {i}") for i in range(7)]
    docs.insert(3, ("poison", "this one carries POISON:400 inside"))
    ctx.enqueue(collection, docs)
    _fails_alone(ctx, collection, "poison", ErrorType.BAD_REQUEST)
    return {"requests": len(provider.requests)}


@scenario("killed_worker_lease_returns_documents", Category.FAILURE, Component.CLAIM, timeout=90)
def dead_lease(ctx: Context) -> None:
    """Documents leased by a worker that died return to the queue when its lease expires and are embedded."""
    collection = ctx.collection("lease")
    dead = f"ops-test-dead-worker-{ctx.run.pk}"
    # Enqueue and claim in one transaction, as a worker would (scoped to this collection), so no
    # live worker sees the documents before the dead one holds them; then never finish.
    with transaction.atomic():
        ctx.enqueue(collection, [(f"leased-{i}", f"held by a dead worker {i}") for i in range(3)])
        claimed = Document.objects.filter(collection=collection).claim(dead, 10, timedelta(seconds=2))
    ctx.check(len(claimed) == 3, f"the dead worker claimed {len(claimed)} of 3 documents")
    ctx.check(all(d.lease_owner == dead for d in claimed), "the dead worker's claim did not hold")
    ctx.wait_documents(collection)
    owners = set(Document.objects.filter(collection=collection).values_list("attempts", flat=True))
    ctx.check(owners == {2}, f"attempts {owners}: each document should be claimed twice (dead worker, then a live one)")


@scenario(
    "reprocessing_backoff_on_simulated_clock",
    Category.FAILURE,
    Component.REPROCESS,
    covers=[(Component.REPROCESS, Condition.NORMAL)],
    timeout=60,
)
def backoff(ctx: Context) -> dict[str, Any]:
    """A failing document is retried after 5 min, 30 min, 2 h and 24 h, then dead-lettered (explicit clock)."""
    # Paused: the requeued document must wait for this scenario, not be claimed by the workers.
    collection = ctx.collection("backoff", paused=True)
    ctx.enqueue(collection, [("flaky", "fails at every retry")])
    doc = Document.objects.get(collection=collection)
    workflow = ReprocessingWorkflow(collection=collection)
    now = timezone.now()
    seen = []
    for step, wait in enumerate(BACKOFF, 1):
        fail_document(doc, ErrorType.API_ERROR, "simulated provider outage", now)
        failure = FailedDocument.objects.unresolved().get(document=doc)
        ctx.check(
            failure.state == FailureState.OPEN and failure.next_retry_at == now + wait,
            f"after failure {step} the retry is at {failure.next_retry_at} ({failure.state}), expected +{wait}",
        )
        early = workflow.run_once(now=now + wait - timedelta(seconds=1))
        ctx.check(early.due == 0, f"failure {step} was retried {timedelta(seconds=1)} before its backoff of {wait}")
        now = now + wait
        due = workflow.run_once(now=now)
        ctx.check(due.due == 1, f"failure {step} was not retried once its backoff of {wait} had passed")
        ctx.check(
            Document.objects.get(pk=doc.pk).status == DocumentStatus.PENDING,
            f"retry {step} did not requeue the document",
        )
        seen.append(str(wait))
    fail_document(doc, ErrorType.API_ERROR, "simulated provider outage", now)
    final = FailedDocument.objects.unresolved().get(document=doc)
    ctx.check(
        final.state == FailureState.DEAD_LETTERED,
        f"after the 24 h retry failed the state is {final.state}, expected dead_lettered",
    )
    return {"backoff": seen}


@scenario("bad_enqueue_requests_refused_whole", Category.FAILURE, Component.ENQUEUE)
def bad_enqueue(ctx: Context) -> dict[str, Any]:
    """Batches with one bad document (invalid Unicode, NUL in metadata, text not a string, an unknown
    field) get a 400 naming the document and the problem; nothing of them is written."""
    collection = ctx.collection("badenqueue")
    good = {"id": "good", "text": "a good neighbour"}
    bad = {
        "lone surrogate": ({"id": "bad", "text": "broken \ud800 text"}, "Surrogate"),
        "NUL in metadata": ({"id": "bad", "text": "fine", "metadata": {"k": "a\x00b"}}, "NUL"),
        "text not a string": ({"id": "bad", "text": {"nested": "object"}}, "text"),
        "unknown field": ({"id": "bad", "text": "fine", "colour": "blue"}, "colour"),
    }
    for what, (doc, named) in bad.items():
        message = ctx.expect(ctx.post(collection, [good, doc]), 400, f"a batch with {what}", named)
        ctx.check(message.startswith("documents: 1"), f"the 400 for {what} does not name document 1: {message}")
    written = list(Document.objects.filter(collection=collection).values_list("external_id", flat=True))
    ctx.check(not written, f"refused batches were partly written: {written}")
    return {"refused": len(bad)}


@scenario("blank_document_fails_alone_at_chunking", Category.FAILURE, Component.CHUNK, timeout=90)
def blank_document(ctx: Context) -> None:
    """A stored document left with nothing to embed (whitespace written around enqueue's check) fails
    alone as empty_document at chunking, with its failure row; its neighbours are embedded."""
    # Paused while the row is rewritten, so no worker claims it before.
    collection = ctx.collection("blank", paused=True)
    ctx.enqueue(collection, [(f"ok-{i}", f"neighbour number {i} with text") for i in range(3)] + [("blank", "x")])
    # enqueue refuses blank text; a row from an older version or a direct write can still hold it.
    Document.objects.filter(collection=collection, external_id="blank").update(text=" \n\t \u3000 ")
    Collection.objects.filter(pk=collection.pk).resume()
    failure = _fails_alone(ctx, collection, "blank", ErrorType.EMPTY_DOCUMENT)
    ctx.check(failure.stage == Stage.CHUNKING, f"the blank document failed at {failure.stage}, expected chunking")
    chunks = Chunk.objects.filter(document__collection=collection, document__external_id="blank").count()
    ctx.check(chunks == 0, f"the blank document has {chunks} chunk(s)")


@scenario("search_provider_down_answers_502", Category.FAILURE, Component.SEARCH)
def search_failures(ctx: Context) -> dict[str, Any]:
    """A vector search answers 502 naming the provider's failure (key scrubbed, one call, no retry) when
    the model endpoint fails, and a hybrid one answers from its keyword ranking, saying so; 400 naming
    the field for a bad k or an empty query."""
    provider, collection = ctx.fault_collection("searchdown")
    for mode, error_type in (("500", ErrorType.API_ERROR), ("401", ErrorType.AUTH)):
        provider.mode = mode
        seen = len(provider.requests)
        message = ctx.expect(
            ctx.post(collection, {"query": "anything at all", "k": 3, "mode": "vector"}, "search"),
            502,
            f"search with the provider answering {mode}",
            f"{error_type}:",
        )
        ctx.check(message.startswith("embedding the query failed"), f"the 502 for a provider {mode} says {message}")
        calls = len(provider.requests) - seen
        ctx.check(calls == 1, f"a search met by a provider {mode} made {calls} provider call(s), expected 1")
        hybrid = ctx.post(collection, {"query": "anything at all", "k": 3, "mode": "hybrid"}, "search")
        served = hybrid.json() if hybrid.status_code == 200 else {}
        ctx.check(
            (served.get("mode"), served.get("fallback")) == ("keyword", error_type),
            f"a hybrid search with the provider answering {mode} answered {hybrid.status_code}: "
            f"{hybrid.content[:300]!r}",
        )
    ctx.check(
        provider.last_key and provider.last_key not in message,
        f"the 502 repeats the key the provider echoed: {message}",
    )
    provider.mode = "ok"
    bad_input = (({"query": "x", "k": 0}, "k"), ({"query": "x", "k": 101}, "k"), ({"query": "", "k": 3}, "query"))
    for body, field in bad_input:
        message = ctx.expect(ctx.post(collection, body, "search"), 400, f"search with {body}", field)
        ctx.check(message.startswith(f"{field}:"), f"the 400 for search with {body} does not start {field}: {message}")
    return {"provider_calls": len(provider.requests)}


@scenario("health_names_a_failing_model_endpoint", Category.FAILURE, Component.HEALTH, timeout=60)
def health_failing_model(ctx: Context) -> dict[str, Any]:
    """/api/v1/health/ answers 503 with the model check naming a collection whose endpoint rejects the
    key (the key the provider echoes scrubbed); pausing that collection takes it out of the check."""
    provider, collection = ctx.fault_collection("health", "401")
    response = ctx.client().get("/api/v1/health/")
    ctx.check(response.status_code == 503, f"health answered {response.status_code} with a model endpoint failing")
    model = _model_check(response)
    ctx.check(model is not None and not model["ok"], f"the model check passed: {model}")
    ctx.check(
        collection.name in model["reason"] and "auth" in model["reason"],
        f"the model check does not name {collection.name} and its auth failure: {model['reason']}",
    )
    key = provider.last_key
    ctx.check(key, "the failing endpoint was never probed")
    ctx.check(key not in response.content.decode(), "the health answer repeats the key the provider echoed")
    Collection.objects.filter(pk=collection.pk).pause()
    model = _model_check(ctx.client().get("/api/v1/health/"))
    ctx.check(
        collection.name not in model["reason"] and collection.name not in str(model["details"]),
        f"the paused collection is still in the model check: {model['reason']}",
    )
    return {"probes": len(provider.requests)}


def _model_check(response: Any) -> dict[str, Any] | None:
    return next((c for c in response.json()["checks"] if c["name"] == "model"), None)


@scenario("stale_failed_document_left_to_its_backoff", Category.FAILURE, Component.STALENESS)
def stale_failed(ctx: Context) -> None:
    """A stale document that failed counts stale but is left to the reprocessing backoff, not requeued by
    the staleness pass; once an operator resolves its failure, the staleness pass takes it back."""
    now = timezone.now()
    # Paused: the scenario drives the document, not the workers.
    collection = stale_document(ctx, "stalefail", "broken", "changed at the source", now - timedelta(minutes=10))
    doc = Document.objects.get(collection=collection)
    fail_document(doc, ErrorType.AUTH, "simulated rejected key", now)
    candidates = partial(requeue_candidates, collection, now)
    stale = stale_counts(now).get(collection.name)
    ctx.check(stale == 1, f"a failed document 10 min past its 60 s SLA counts {stale} stale, expected 1")
    ctx.check(candidates() == [], f"the staleness pass would requeue {candidates()} despite their open failure")
    FailedDocument.objects.filter(document=doc).resolve(Resolution.OPERATOR, now)
    ctx.check(candidates() == ["broken"], f"after its failure was resolved the staleness pass takes {candidates()}")


@scenario("metrics_answer_through_a_provider_fault", Category.FAILURE, Component.METRICS, timeout=90)
def metrics_during_fault(ctx: Context) -> dict[str, Any]:
    """While a provider rejects a reserved collection's key, /metrics answers and parses, its failure shows in
    the reprocessing queue gauge, and (where the scrape sees the workers' counters) no alerting counter moves."""
    before = scrape(ctx)
    _, collection = ctx.fault_collection("metricsfault", "401")
    ctx.enqueue(collection, [("rejected", "a document whose key the provider rejects")])
    _failed_with(ctx, collection, "rejected", ErrorType.AUTH)
    after = scrape(ctx)
    waiting = sample(after, "pipeline_reprocessing_queue_size", state="waiting", error_type="auth")
    ctx.check(waiting >= 1, f"pipeline_reprocessing_queue_size{{state=waiting,error_type=auth}} is {waiting}")
    counters_seen = bool(multiprocess_dir())
    if counters_seen:
        errors = "embedding_pipeline_errors"
        moved = sample(after, errors, "_total", error_type="auth") - sample(before, errors, "_total", error_type="auth")
        ctx.check(not moved, f"the reserved collection's auth failure moved embedding_pipeline_errors_total by {moved}")
    return {"waiting_auth": waiting, "counters_checked": counters_seen}
