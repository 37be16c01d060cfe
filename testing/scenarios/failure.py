"""Failure conditions: the fault-injecting provider behind reserved collections, a dead worker's
lease, and the reprocessing backoff walked on a simulated clock (explicit `now`, no sleeping)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from pipeline.choices import DocumentStatus, ErrorType, Stage
from pipeline.embedding import PipelineError
from pipeline.models import Collection, Document
from reprocessing.choices import FailureState
from reprocessing.failures import BACKOFF, record_failure
from reprocessing.models import FailedDocument
from reprocessing.workflow import ReprocessingWorkflow
from testing.choices import Category, Component, Condition
from testing.registry import scenario
from testing.tester import Context

F = Condition.FAILURE


def _failed_with(ctx: Context, collection: Collection, external_id: str, error_type: str) -> FailedDocument:
    """The document failed for good and its failure row carries the expected type."""
    ctx.wait_documents(collection, [external_id], until=[DocumentStatus.FAILED])
    failure = (
        FailedDocument.objects.open().filter(document__collection=collection, document__external_id=external_id).first()
    )
    ctx.check(failure is not None, f"{external_id} failed but no failure row was recorded for the ReprocessingWorkflow")
    ctx.check(
        failure.error_type == error_type,
        f"{external_id} was recorded as {failure.error_type}, expected {error_type}: {failure.message[:200]}",
    )
    ctx.check(failure.next_retry_at is not None, f"{external_id}'s failure has no retry scheduled")
    return failure


def _fault_scenario(mode: str, error_type: str, transient: bool, **fields: Any):
    def run(ctx: Context) -> dict[str, Any]:
        provider = ctx.fault_provider()
        provider.mode = mode
        collection = ctx.fault_collection(provider, mode, **fields)
        ctx.enqueue(collection, [("victim", f"a document meeting a provider answering {mode}")])
        if transient:
            # Provider outages are retried, then the document goes back to the queue with a delay
            # (deferred), not failed: wait for that, and for the error type on the document.
            def deferred() -> bool:
                doc = Document.objects.get(collection=collection)
                return doc.status == DocumentStatus.PENDING and doc.attempts >= 1 and bool(doc.last_error)

            ctx.require_workers()
            if not ctx.wait_until(deferred):
                doc = Document.objects.get(collection=collection)
                ctx.fail(
                    f"a {mode} was not retried and deferred: the document is {doc.status}, attempts {doc.attempts}"
                )
            doc = Document.objects.get(collection=collection)
            ctx.check(
                f"{error_type}:" in doc.last_error,
                f"the deferred document records {doc.last_error[:120]!r}, expected {error_type}",
            )
            failure = doc
        else:
            failure = _failed_with(ctx, collection, "victim", error_type)
        seen = len(provider.requests)
        if transient:
            ctx.check(seen >= 2, f"the provider saw {seen} request(s): a transient {mode} was not retried")
        else:
            ctx.check(seen == 1, f"the provider saw {seen} request(s), expected 1: a permanent {mode} was retried")
        if mode == "401":
            # The provider echoed the key it was sent; nothing stored may repeat it.
            key = (provider.requests[-1]["auth"] or "").removeprefix("Bearer ")
            stored = failure.message + Document.objects.get(collection=collection).last_error
            ctx.check(key and key not in stored, f"the provider's echo of the key was stored: {stored[:200]}")
        return {"requests": len(provider.requests), "error_type": str(error_type)}

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
    _func = _fault_scenario(_mode, _type, _transient, **_fields)
    _func.__doc__ = (
        f"The provider answers {_mode}: the document is retried and deferred as {_type}"
        if _transient
        else f"The provider answers {_mode}: the document fails as {_type} and is scheduled for reprocessing."
    )
    scenario(_name, Category.FAILURE, Component.EMBED, covers=[(Component.EMBED, F)], timeout=90)(_func)


@scenario(
    "provider_429_retry_after_honoured", Category.FAILURE, Component.EMBED, covers=[(Component.EMBED, F)], timeout=60
)
def rate_limited(ctx: Context) -> dict[str, Any]:
    """A 429 with Retry-After is waited out (at least that long) and the document is then embedded."""
    provider = ctx.fault_provider()
    provider.retry_after = "2"
    provider.script = ["429"]
    stamps: list[float] = []
    original = provider.pick

    def pick(inputs: list[str]) -> str:
        stamps.append(time.monotonic())
        return original(inputs)

    provider.pick = pick
    collection = ctx.fault_collection(provider, "429")
    ctx.enqueue(collection, [("limited", "a document meeting a rate limit")])
    ctx.wait_documents(collection)
    ctx.check(len(stamps) == 2, f"the provider saw {len(stamps)} request(s), expected the 429 and one retry")
    gap = stamps[1] - stamps[0]
    ctx.check(gap >= 1.8, f"the retry came {gap:.2f} s after the 429, before its Retry-After of 2 s")
    return {"retry_gap_seconds": gap}


@scenario(
    "poison_document_fails_alone",
    Category.FAILURE,
    Component.EMBED,
    covers=[(Component.EMBED, F), (Component.STORE, F)],
    timeout=90,
)
def poison(ctx: Context) -> dict[str, Any]:
    """One poisoned document in a batch fails alone (bad_request); its neighbours are embedded."""
    provider = ctx.fault_provider()
    collection = ctx.fault_collection(provider, "poison")
    docs = [(f"good-{i}", f"healthy neighbour {i}") for i in range(7)]
    docs.insert(3, ("poison", "this one carries POISON:400 inside"))
    ctx.enqueue(collection, docs)
    statuses = ctx.wait_documents(collection, until=[DocumentStatus.EMBEDDED, DocumentStatus.FAILED])
    failed = sorted(i for i, s in statuses.items() if s == DocumentStatus.FAILED)
    ctx.check(failed == ["poison"], f"failed documents {failed}, expected only the poisoned one")
    _failed_with(ctx, collection, "poison", ErrorType.BAD_REQUEST)
    return {"requests": len(provider.requests)}


@scenario(
    "killed_worker_lease_returns_documents",
    Category.FAILURE,
    Component.CLAIM,
    covers=[(Component.CLAIM, F)],
    timeout=90,
)
def dead_lease(ctx: Context) -> dict[str, Any]:
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
    ctx.check(
        owners == {2}, f"attempts {owners}: each document should have been claimed twice (dead worker, then a live one)"
    )
    return {}


@scenario(
    "reprocessing_backoff_on_simulated_clock",
    Category.FAILURE,
    Component.REPROCESS,
    covers=[(Component.REPROCESS, F), (Component.REPROCESS, Condition.NORMAL)],
    timeout=60,
)
def backoff(ctx: Context) -> dict[str, Any]:
    """A failing document is retried after 5 min, 30 min, 2 h and 24 h, then dead-lettered (explicit clock)."""
    collection = ctx.collection("backoff")
    # Paused: the requeued document must wait for this scenario, not be claimed by the workers.
    Collection.objects.filter(pk=collection.pk).pause()
    ctx.enqueue(collection, [("flaky", "fails at every retry")])
    doc = Document.objects.get(collection=collection)
    workflow = ReprocessingWorkflow(collection=collection)
    now = timezone.now()
    error = PipelineError(ErrorType.API_ERROR, Stage.EMBEDDING, "simulated provider outage")
    seen = []
    for step, wait in enumerate(BACKOFF, 1):
        Document.objects.filter(pk=doc.pk).update(status=DocumentStatus.FAILED)
        record_failure(doc.pk, error, "simulated provider outage", now=now)
        failure = FailedDocument.objects.open().get(document=doc)
        ctx.check(
            failure.state == FailureState.WAITING and failure.next_retry_at == now + wait,
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
    Document.objects.filter(pk=doc.pk).update(status=DocumentStatus.FAILED)
    record_failure(doc.pk, error, "simulated provider outage", now=now)
    final = FailedDocument.objects.open().get(document=doc)
    ctx.check(
        final.state == FailureState.DEAD_LETTERED,
        f"after the 24 h retry failed the state is {final.state}, expected dead_lettered",
    )
    return {"backoff": seen}
