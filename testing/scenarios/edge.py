"""Edge cases: inputs at and past the limits, and collections that must not interfere."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from pipeline.choices import ErrorType
from pipeline.models import Chunk, Collection, Document
from pipeline.search import search
from reprocessing.choices import FailureState, Resolution
from reprocessing.failures import BACKOFF
from reprocessing.models import FailedDocument
from reprocessing.staleness import stale_counts
from reprocessing.workflow import ReprocessingWorkflow
from testing.choices import Category, Component
from testing.context import Context
from testing.registry import scenario
from testing.scenarios.shared import fail_document, requeue_candidates, stale_document


@scenario("empty_and_whitespace_text_refused", Category.EDGE, Component.ENQUEUE, quick=True)
def empty_text(ctx: Context) -> None:
    """Empty and whitespace-only texts get a 400 that says what to fix, and nothing is written."""
    collection = ctx.collection("empty")
    for text in ("", "   \n\t  "):
        ctx.expect(ctx.post(collection, {"id": "empty", "text": text}), 400, f"text {text!r}", "empty")
    ctx.check(not Document.objects.filter(collection=collection).exists(), "a refused document was written")


@scenario("largest_accepted_document", Category.EDGE, Component.CHUNK, covers=[Component.ENQUEUE], timeout=240)
def largest_document(ctx: Context) -> dict[str, Any]:
    """A document of exactly EMBEDPORTAL_MAX_DOCUMENT_CHARS is accepted and embedded; one character more is refused."""
    limit = settings.EMBEDPORTAL_MAX_DOCUMENT_CHARS
    collection = ctx.collection("largest", chunk_size=4000, batch_size=128)
    words = ("lorem ipsum dolor sit amet consectetur " * (limit // 38 + 2))[:limit]
    ctx.expect(ctx.post(collection, {"id": "too-big", "text": words + "x"}), 400, f"{limit + 1} characters")
    ctx.expect(ctx.post(collection, {"id": "largest", "text": words}), 202, f"exactly {limit} characters")
    ctx.wait_documents(collection, timeout=200)
    return {"characters": limit, "chunks": Chunk.objects.filter(collection=collection).count()}


UNICODE_TEXTS = {
    "emoji": "Rocket 🚀 launch with family 👨‍👩‍👧 and flags 🇯🇵",
    "cjk": "東京の天気は晴れです。자연어 처리. 中文分词测试",
    "rtl": "مرحبا بالعالم — שלום עולם",
    "combining": "Cafe\u0301 nai\u0308ve Zalgo t\u0336e\u0335x\u0334t",
    "control": "tab\there\x01\x02 bell\x07 and form\x0cfeed, line\u2028separator",
}


@scenario("unicode_and_control_characters", Category.EDGE, Component.EMBED, covers=[Component.SEARCH], quick=True)
def unicode_text(ctx: Context) -> None:
    """Emoji, CJK, right-to-left, combining and control characters are embedded and found; NUL is refused."""
    collection = ctx.collection("unicode")
    ctx.expect(ctx.post(collection, [{"id": k, "text": v} for k, v in UNICODE_TEXTS.items()]), 202, "Unicode")
    ctx.expect(ctx.post(collection, {"id": "nul", "text": "a\x00b"}), 400, "a NUL character", "NUL")
    ctx.wait_documents(collection)
    for key, text in UNICODE_TEXTS.items():
        ctx.check_first([h.document_id for h in search(collection, text, 1)], key, f"search for the {key} text")
        stored = Chunk.objects.get(document__collection=collection, document__external_id=key).text
        ctx.check(stored == text, f"{key} text changed on its way to storage: {stored!r}")


@scenario("duplicate_ids_in_one_batch_refused", Category.EDGE, Component.ENQUEUE, quick=True)
def duplicate_ids(ctx: Context) -> None:
    """A batch repeating an id is refused whole, naming the id; nothing half-written."""
    collection = ctx.collection("dupes")
    batch = [{"id": "x", "text": "one"}, {"id": "y", "text": "two"}, {"id": "x", "text": "three"}]
    ctx.expect(ctx.post(collection, batch), 400, "duplicate ids", "'x'")
    ctx.check(not Document.objects.filter(collection=collection).exists(), "part of the refused batch was written")


@scenario("large_batch_accepted_and_embedded", Category.EDGE, Component.CLAIM, covers=[Component.STORE], timeout=240)
def large_batch(ctx: Context) -> dict[str, Any]:
    """The largest batch one request may carry is accepted and embedded; one more document is refused."""
    limit = settings.EMBEDPORTAL_MAX_DOCUMENTS_PER_REQUEST
    collection = ctx.collection("batch")
    docs = [{"id": f"d{i}", "text": f"large batch document {i}"} for i in range(limit)]
    ctx.expect(ctx.post(collection, [*docs, {"id": "extra", "text": "one too many"}]), 400, f"{limit + 1} documents")
    created = ctx.post(collection, docs)
    ctx.expect(created, 202, f"{limit} documents")
    ctx.check(len(created.json()["created"]) == limit, f"{limit} documents created {len(created.json()['created'])}")
    ctx.wait_documents(collection, timeout=200)
    return {"documents": limit}


@scenario("different_dimensions_side_by_side", Category.EDGE, Component.STORE, covers=[Component.SEARCH], quick=True)
def mixed_dimensions(ctx: Context) -> None:
    """Collections of 16 and 48 dimensions share the chunk table, each with its own index and search."""
    small, large = ctx.collection("d16", model="local/hash-16"), ctx.collection("d48", model="local/hash-48")
    ctx.enqueue(small, [("same", "the same text in two collections")])
    ctx.enqueue(large, [("same", "the same text in two collections"), ("other", "only in the large one")])
    ctx.wait_documents(small)
    ctx.wait_documents(large)
    wanted = {small.index_name, large.index_name}
    with connection.cursor() as cur:
        cur.execute("SELECT indexname FROM pg_indexes WHERE indexname = ANY(%s)", [list(wanted)])
        indexes = {row[0] for row in cur.fetchall()}
    ctx.check(indexes == wanted, f"indexes present: {sorted(indexes)}")
    dims = {
        c.name: {len(v) for v in Chunk.objects.filter(collection=c).values_list("embedding", flat=True)}
        for c in (small, large)
    }
    ctx.check(dims == {small.name: {16}, large.name: {48}}, f"stored dimensions {dims}")
    found = [h.document_id for h in search(small, "only in the large one", 5)]
    ctx.check(found == ["same"], f"search in the 16-dimension collection returned {found}")


@scenario("paused_collection_not_claimed", Category.EDGE, Component.CLAIM, quick=True)
def paused(ctx: Context) -> None:
    """Workers leave a paused collection's queue alone (while embedding others) and take it once resumed."""
    held, sentinel = ctx.collection("paused", paused=True), ctx.collection("sentinel")
    ctx.enqueue(held, [("held", "waits for resume")])
    ctx.enqueue(sentinel, [("moves", "proves the workers are running")])
    ctx.wait_documents(sentinel)
    doc = Document.objects.get(collection=held)
    ctx.check(
        doc.status == "pending" and doc.attempts == 0,
        f"a paused collection's document was claimed ({doc.status}, attempts {doc.attempts})",
    )
    Collection.objects.filter(pk=held.pk).resume()  # wakes the workers
    ctx.wait_documents(held)


@scenario("staleness_sla_boundary_and_requeued_once", Category.EDGE, Component.STALENESS, quick=True)
def staleness_edges(ctx: Context) -> None:
    """On an explicit clock a document turns stale just after its SLA, not at it; the staleness pass takes
    a stale embedded document once, and not again while it is queued."""
    changed = timezone.now() - timedelta(minutes=5)
    # Paused: the document stays where the scenario puts it.
    collection = stale_document(ctx, "staleedge", "doc", "changed at the source five minutes ago", changed)
    deadline = changed + collection.freshness_sla
    at = stale_counts(deadline).get(collection.name)
    after = stale_counts(deadline + timedelta(seconds=1)).get(collection.name)
    ctx.check(at == 0 and after == 1, f"stale at the SLA deadline: {at}, one second after: {after}; expected 0, 1")
    # Embedded before the source changed again: stale, and nobody else will bring it back.
    docs = Document.objects.filter(collection=collection)
    docs.update(status="embedded", last_embedded_at=changed - timedelta(minutes=1))
    now = timezone.now()
    candidates = partial(requeue_candidates, collection, now)
    ctx.check(candidates() == ["doc"], f"the staleness pass would take {candidates()}, expected the stale document")
    first = Document.objects.filter(collection=collection, external_id__in=candidates()).requeue()
    ctx.check(first == 1, f"requeueing the stale document changed {first} row(s)")
    ctx.check(candidates() == [], f"the staleness pass would take {candidates()} again while it is queued")
    again = docs.requeue()
    ctx.check(again == 0, f"a second requeue of the pending document changed {again} row(s)")
    ctx.check(stale_counts(now).get(collection.name) == 1, "a queued stale document stopped counting stale")


@scenario(
    "failed_document_edited_meanwhile_reprocessed_with_new_text",
    Category.EDGE,
    Component.REPROCESS,
    timeout=90,
    quick=True,
)
def edited_while_failed(ctx: Context) -> None:
    """A failed document its producer re-sends with new text before its retry is due is queued once (the due
    retry does not requeue it again), embedded with the new text, and its failure resolved as reprocessed."""
    # Paused: the scenario drives the failure, then the workers embed.
    collection = ctx.collection("edited", paused=True)
    ctx.enqueue(collection, [("doc", "first version that failed")])
    doc = Document.objects.get(collection=collection)
    now = timezone.now()
    fail_document(doc, ErrorType.API_ERROR, "simulated outage", now)
    result = ctx.enqueue(collection, [("doc", "second version sent meanwhile")])
    ctx.check(result.updated == ["doc"], f"re-sending new text reported {result.as_dict()}")
    retry = ReprocessingWorkflow(collection=collection).run_once(now=now + BACKOFF[0])
    ctx.check(retry.due == 1, f"the due retry found {retry.due} failure(s), expected 1")
    doc.refresh_from_db()
    ctx.check(
        doc.status == "pending" and doc.attempts == 0,
        f"after the due retry the document is {doc.status} (attempts {doc.attempts})",
    )
    Collection.objects.filter(pk=collection.pk).resume()
    ctx.wait_documents(collection)
    texts = list(Chunk.objects.filter(document__collection=collection).values_list("text", flat=True))
    ctx.check(texts == ["second version sent meanwhile"], f"the document was embedded as {texts}")
    failure = FailedDocument.objects.filter(document=doc).order_by("-id").first()
    ctx.check(
        failure.state == FailureState.RESOLVED and failure.resolution == Resolution.REPROCESSED,
        f"its failure is {failure.state} ({failure.resolution or 'no resolution'}), expected resolved as reprocessed",
    )
