"""Load: a bounded ingest and search with the hash model, reporting throughput and p95."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from django.conf import settings

from pipeline.choices import DocumentStatus
from pipeline.models import RESERVED_PREFIX, Document
from pipeline.search import search
from testing.choices import Category, Component, Condition
from testing.context import Context
from testing.registry import scenario

SEARCHES = 100


@scenario(
    "bounded_ingest_and_search_load",
    Category.LOAD,
    Component.CLAIM,
    covers=[(Component.CLAIM, Condition.NORMAL), (Component.STORE, Condition.NORMAL)],
    timeout=300,
)
def ingest_and_search(ctx: Context) -> dict[str, Any]:
    """A bounded batch through the running workers, then 100 searches; refused while users' work is queued."""
    # Pending documents of unpaused user collections: the real queue.
    user_queue = Document.objects.filter(status=DocumentStatus.PENDING, collection__paused=False)
    backlog = user_queue.exclude(collection__name__startswith=RESERVED_PREFIX).count()
    if backlog > settings.EMBEDPORTAL_OPS_TEST_MAX_BACKLOG:
        ctx.skip(
            f"refused: {backlog} user document(s) are queued (more than EMBEDPORTAL_OPS_TEST_MAX_BACKLOG="
            f"{settings.EMBEDPORTAL_OPS_TEST_MAX_BACKLOG}); load would delay them"
        )
    n = settings.EMBEDPORTAL_OPS_TEST_LOAD_DOCUMENTS
    collection = ctx.collection("load", model="local/hash-64", chunk_size=500, batch_size=128)
    # One chunk per document, equal to its text (no trailing space to strip): its own query finds it.
    docs = [(f"load-{i}", f"load document {i}: " + " ".join(["several words of filler text"] * 8)) for i in range(n)]
    started = time.perf_counter()
    ctx.enqueue(collection, docs)
    ctx.wait_documents(collection, timeout=4 * ctx.wait_seconds)
    ingest = time.perf_counter() - started
    latencies = []
    for i in range(SEARCHES):
        t0 = time.perf_counter()
        hits = search(collection, docs[i % n][1], 5)
        latencies.append(time.perf_counter() - t0)
        ctx.check(hits and hits[0].document_id == docs[i % n][0], f"search {i} did not find its document under load")
    return {
        "documents": n,
        "ingest_seconds": ingest,
        "docs_per_second": n / ingest,
        "searches": SEARCHES,
        "search_p95_seconds": float(np.percentile(latencies, 95)),
        "search_p50_seconds": sorted(latencies)[len(latencies) // 2],
    }
