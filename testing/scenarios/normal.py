"""Normal conditions: the paths producers and readers use every day."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from io import StringIO
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from pipeline.models import Chunk, Collection, Document
from reprocessing.staleness import stale_counts
from testing.choices import Category, Component
from testing.context import Context
from testing.registry import scenario
from testing.scenarios.shared import enqueue_jsonl, scrape, stale_document


@scenario(
    "canary_embedded_and_found",
    Category.NORMAL,
    Component.SEARCH,
    covers=[Component.ENQUEUE, Component.CLAIM, Component.EMBED, Component.STORE],
    timeout=180,
    retries=1,
    quick=True,
)
def canary(ctx: Context) -> dict[str, Any]:
    """A canary sent through the API (default model) is embedded by the running workers and found at rank 1."""
    model = settings.EMBEDPORTAL_DEFAULT_MODEL
    collection = ctx.collection(
        "canary", model=model, chunk_unit="tokens", chunk_size=128, chunk_overlap=16, dimensions=None
    )
    marker = uuid.uuid4().hex
    text = f"Operations canary {marker}: the lighthouse keeper logs every passing ship at dawn."
    ctx.expect(ctx.post(collection, {"id": f"canary-{marker}", "text": text}), 202, "enqueue through the API")
    ctx.wait_documents(collection)
    search = ctx.post(collection, {"query": text, "k": 3}, "search")
    ctx.expect(search, 200, "search through the API")
    hits = search.json()["results"]
    ctx.check_first([h["document_id"] for h in hits], f"canary-{marker}", "the canary")
    ctx.check(hits[0]["score"] > 0.99, f"canary found with score {hits[0]['score']}, expected ~1 for its own text")
    doc = Document.objects.get(collection=collection)
    latency = (doc.last_embedded_at - doc.enqueued_at).total_seconds()
    return {"model": collection.model, "end_to_end_seconds": latency, "score": hits[0]["score"]}


@scenario("deleted_document_leaves_search", Category.NORMAL, Component.SEARCH, covers=[Component.STORE], quick=True)
def deleted_document(ctx: Context) -> None:
    """A document deleted through the API is gone with its chunks: search no longer finds it, its neighbour stays."""
    collection = ctx.collection("deleted")
    marker = uuid.uuid4().hex
    for doc in ("gone", "kept"):
        ctx.expect(ctx.post(collection, {"id": doc, "text": f"{doc} {marker}: a page of the docs"}), 202, "enqueue")
    ctx.wait_documents(collection)
    response = ctx.client().delete(f"/api/v1/collections/{collection.name}/documents/gone/")
    ctx.expect(response, 204, "deleting a document through the API")
    hits = ctx.post(collection, {"query": f"gone {marker}", "k": 5}, "search").json()["results"]
    ctx.check([h["document_id"] for h in hits] == ["kept"], f"search after the delete found {hits}, expected kept")
    left = Chunk.objects.filter(collection=collection).values_list("document__external_id", flat=True).distinct()
    ctx.check(list(left) == ["kept"], f"chunks left: {sorted(left)}, expected those of kept only")


@scenario(
    "changed_document_reembedded_unchanged_skipped",
    Category.NORMAL,
    Component.STORE,
    covers=[Component.ENQUEUE],
    quick=True,
)
def changed_and_unchanged(ctx: Context) -> None:
    """Re-sending a changed document re-embeds it; re-sending an unchanged one leaves it alone."""
    collection = ctx.collection("change")
    ctx.enqueue(collection, [("a", "first version of a"), ("b", "only version of b")])
    ctx.wait_documents(collection)
    before = dict(Document.objects.filter(collection=collection).values_list("external_id", "last_embedded_at"))
    result = ctx.enqueue(collection, [("a", "second version of a"), ("b", "only version of b")])
    ctx.check(result.updated == ["a"] and result.unchanged == ["b"], f"enqueue reported {result.as_dict()}")
    ctx.check(
        Document.objects.get(collection=collection, external_id="b").status == "embedded",
        "the unchanged document was sent back to the queue",
    )
    ctx.wait_documents(collection)
    after = dict(Document.objects.filter(collection=collection).values_list("external_id", "last_embedded_at"))
    ctx.check(after["a"] > before["a"], "the changed document was not re-embedded")
    ctx.check(after["b"] == before["b"], "the unchanged document was re-embedded")
    chunks = Chunk.objects.filter(document__collection=collection, document__external_id="a")
    texts = list(chunks.values_list("text", flat=True))
    ctx.check(texts == ["second version of a"], f"the changed document's chunks are {texts}")


@scenario("cli_enqueue_and_search", Category.NORMAL, Component.ENQUEUE, covers=[Component.SEARCH], quick=True)
def cli_path(ctx: Context) -> None:
    """The `enqueue` command (JSONL) feeds the workers and the `search` command finds the document."""
    collection = ctx.collection("cli")
    docs = [{"id": f"cli-{i}", "text": f"command line document number {i}"} for i in range(3)]
    said = enqueue_jsonl(collection, docs)
    ctx.check("3 new" in said, f"enqueue said: {said.strip()}")
    ctx.wait_documents(collection)
    out = StringIO()
    call_command("search", "command line document number 1", collection=collection.name, json=True, stdout=out)
    ctx.check_first([h["document_id"] for h in json.loads(out.getvalue())], "cli-1", "search --json")


@scenario("admin_enqueue_path", Category.NORMAL, Component.ENQUEUE, quick=True)
def admin_path(ctx: Context) -> None:
    """Adding a document in the admin enqueues it and the workers embed it."""
    collection = ctx.collection("admin")
    form = {"collection": collection.pk, "external_id": "admin-1", "text": "added by an operator in the admin"}
    response = ctx.client().post("/admin/pipeline/document/add/", {**form, "metadata": "{}"})
    ctx.check(response.status_code == 302, f"the admin add form answered {response.status_code} (form errors?)")
    ctx.wait_documents(collection)


@scenario("health_checks_pass", Category.NORMAL, Component.HEALTH, quick=True)
def health_checks(ctx: Context) -> dict[str, Any]:
    """GET /api/v1/health/ reports the model, pgvector and queue checks healthy."""
    response = ctx.client().get("/api/v1/health/")
    body = response.json()
    failing = [f"{c['name']}: {c['reason']}" for c in body.get("checks", []) if not c["ok"]]
    ctx.check(
        response.status_code == 200 and not failing, f"health answered {response.status_code}: {'; '.join(failing)}"
    )
    return {c["name"]: c["seconds"] for c in body["checks"]}


PIPELINE_SERIES = """
    embedding_pipeline_throughput_docs_per_second embedding_pipeline_latency_seconds embedding_pipeline_errors
    embedding_pipeline_queue_depth embedding_pipeline_documents_processed embedding_pipeline_workers_alive
    embedding_pipeline_oldest_pending_age_seconds pipeline_reprocessing pipeline_stale_documents_count
""".split()


@scenario("metrics_expose_pipeline_series", Category.NORMAL, Component.METRICS, quick=True)
def metrics_series(ctx: Context) -> dict[str, Any]:
    """/metrics exposes every pipeline series (families by name, counters without _total)."""
    families = scrape(ctx)
    missing = [name for name in PIPELINE_SERIES if name not in families]
    ctx.check(not missing, f"/metrics lacks {', '.join(missing)}")
    return {"families": len(families)}


@scenario("staleness_detected_and_cleared", Category.NORMAL, Component.STALENESS, quick=True)
def staleness(ctx: Context) -> None:
    """A document changed at the source longer ago than its SLA is counted stale until the workers embed it."""
    collection = stale_document(ctx, "stale", "old", "changed ten minutes ago", timezone.now() - timedelta(minutes=10))
    stale = stale_counts().get(collection.name)
    ctx.check(stale == 1, f"a document 10 min past a 60 s SLA counts {stale} stale, expected 1")
    Collection.objects.filter(pk=collection.pk).resume()
    ctx.wait_documents(collection)
    stale = stale_counts().get(collection.name)
    ctx.check(stale == 0, f"after embedding the document counts {stale} stale, expected 0")
