"""A forked-worker load harness: fill a paused scratch collection (reserved prefix __capacity_),
start N real worker processes forked after the model is loaded, and take the sustained rate
between the 10th and 90th percentile of the documents' commit times (no start-up, no tail).
The capacity measurement (pipeline.performance.capacity) runs it per worker count; the ingest
benchmark (testing.benchmarks.ingest) drains its corpus with the same drain_forked()."""

from __future__ import annotations

import multiprocessing
import os
import random
import resource
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from statistics import median_low
from typing import Any

import psutil
from django.db import connections
from django.db.models.functions import Length
from django.utils import timezone

from embedportal.shutdown import die_with_parent
from pipeline import encoder, providers
from pipeline.choices import DocumentStatus, WorkerRole
from pipeline.collections import create_collection
from pipeline.leases import Report
from pipeline.models import CAPACITY_PREFIX, Collection, Document, WorkerHeartbeat, reserved_names
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue

# Characters per synthetic document when no user collection of the model has any.
DEFAULT_DOCUMENT_CHARS = 4000


class CapacityError(Exception):
    """The measurement cannot be made or would be wrong; the message says why and what to do."""


@dataclass
class Point:
    workers: int
    docs_per_second: float
    documents: int
    chunks: int
    seconds: float


def _words(chars: int, rng: random.Random) -> str:
    # Varied words and sentences, so chunkers split as they do on prose.
    vocabulary = (
        "pipeline embedding vector index queue worker latency freshness document chunk model batch "
        "database capacity throughput measure operator request source update storage retrieval "
        "the a of to and in is for on with as by at from that this it be are was"
    ).split()
    text = ""
    while len(text) < chars:
        text += " ".join(rng.choice(vocabulary) for _ in range(rng.randint(6, 18))).capitalize() + ". "
    return text[:chars]


def document_chars(model: str) -> int:
    """The median length of the model's user documents (a sample), else DEFAULT_DOCUMENT_CHARS."""
    documents = Document.objects.filter(collection__in=Collection.objects.user_collections().filter(model=model))
    lengths = list(documents.annotate(chars=Length("text")).values_list("chars", flat=True)[:1000])
    return median_low(lengths) if lengths else DEFAULT_DOCUMENT_CHARS


def chunking_of(model: str) -> dict[str, Any]:
    """Chunking of the model's (first) user collection, so the load is what is deployed; else the defaults."""
    template = Collection.objects.user_collections().filter(model=model).order_by("pk").first()
    if template is None:
        return {}
    # What a re-embed may change is what shapes the load: all of it but the model, which is given.
    return {name: getattr(template, name) for name in Collection.REEMBED_FIELDS if name != "model"}


def preflight() -> None:
    """Refuse to measure when the figures would be wrong: queued work elsewhere, or running
    pipeline workers that would take part. Leftover scratch collections of a killed run go."""
    for collection in Collection.objects.filter(name__startswith=CAPACITY_PREFIX):
        collection.delete()
    busy = (
        Document.objects.filter(status__in=[DocumentStatus.PENDING, DocumentStatus.PROCESSING])
        .exclude(collection__name__startswith=CAPACITY_PREFIX)
        .count()
    )
    if busy:
        raise CapacityError(
            f"{busy} documents are queued or being processed: the measurement's workers would embed them and "
            "the figure would be wrong. Measure when the queue is empty."
        )
    workers = list(WorkerHeartbeat.objects.alive().filter(role=WorkerRole.WORKER).values_list("worker", flat=True))
    if workers:
        raise CapacityError(
            f"pipeline workers are running ({', '.join(workers)}): they would take part in the measurement. "
            "Stop them (run_pipeline) first; django-q2 drain tasks are detected if they join."
        )


def peak_rss_mb() -> float:
    """This process's peak resident set so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _memory() -> tuple[float, float]:
    """This process's peak resident set and unique memory now, in MB."""
    return peak_rss_mb(), psutil.Process().memory_full_info().uss / 2**20


def _worker(worker_id: str, start: Any, results: Any, parent: int) -> None:
    die_with_parent(parent)  # daemonic, but a parent killed outright never ends its daemons
    connections.close_all()  # never share the parent's socket
    _ready()
    start.wait()
    report = EmbeddingIngestionPipeline(worker_id=worker_id).drain()
    results.put((report, *_memory()))
    connections.close_all()


@dataclass
class Drained:
    """What the forked workers did; memory: the largest peak resident set and unique memory of one (MB)."""

    report: Report
    started: datetime
    seconds: float
    peak_rss_mb: float
    uss_mb: float


def drain_forked(workers: int, prefix: str, release: Callable[[], None] | None = None) -> Drained:
    """Fork `workers` processes (after warm_up(), so they share the loaded model), call `release`
    once they exist, let them go together and wait until each has drained the queue."""
    if workers == 1:
        # One worker drains here: a child forked from a process whose torch already ran (an earlier
        # encode started its OpenMP pool) hangs on its first batch.
        if release:
            release()
        _ready()
        started, t0 = timezone.now(), time.perf_counter()
        report = EmbeddingIngestionPipeline(worker_id=f"{prefix}-{os.getpid()}-0").drain()
        WorkerHeartbeat.objects.stop()
        return Drained(report, started, time.perf_counter() - t0, *_memory())
    connections.close_all()
    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Event(), ctx.Queue()
    # Daemonic: a worker that hangs must not keep this process from exiting.
    procs = [
        ctx.Process(target=_worker, args=(f"{prefix}-{os.getpid()}-{i}", start, results, os.getpid()), daemon=True)
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    if release:
        release()
    started, t0 = timezone.now(), time.perf_counter()
    start.set()
    total, peak, uss = Report(), 0.0, 0.0
    for _ in procs:
        report, rss, unique = results.get()
        total.add(report)
        peak, uss = max(peak, rss), max(uss, unique)
    seconds = time.perf_counter() - t0
    for p in procs:
        p.join()
        if p.exitcode:
            raise CapacityError(f"a load worker exited with {p.exitcode}")
    # The processes are gone: their heartbeats must not stop the next measurement (preflight).
    WorkerHeartbeat.objects.filter(worker__in=[f"{socket.gethostname()}:{p.pid}" for p in procs]).delete()
    return Drained(total, started, seconds, peak, uss)


def _sustained_rate(commit_times: list[datetime], started: datetime) -> tuple[float, float]:
    """(docs/s, seconds): between the documents at the 10th and 90th percentile of commit time when
    at least 5 batches committed, else over the whole run."""
    times = sorted(commit_times)
    if len(set(times)) >= 5:
        lo, hi = times[len(times) // 10], times[(len(times) * 9) // 10]
        inside = sum(1 for t in times if lo < t <= hi)
        span = (hi - lo).total_seconds()
        if inside and span > 0:
            return inside / span, span
    span = max((times[-1] - started).total_seconds(), 1e-6)
    return len(times) / span, span


def measure_workers(model: str, workers: int, documents: int, chars: int, chunking: dict[str, Any]) -> Point:
    """One worker count: fill a paused scratch collection, start `workers` processes, unpause."""
    name = f"{CAPACITY_PREFIX}{int(time.time())}_{workers}w"
    with reserved_names():
        collection = create_collection(name=name, model=model, paused=True, **chunking)
    try:
        rng = random.Random(0)
        docs = [IncomingDocument(f"load-{i}", _words(chars, rng)) for i in range(documents)]
        for i in range(0, len(docs), 500):
            enqueue(collection, docs[i : i + 500])
        # A plain update, not resume(): resume wakes the cluster's drain tasks, which would join in.
        release = Collection.objects.filter(pk=collection.pk).update
        drained = drain_forked(workers, "capacity", lambda: release(paused=False))
        embedded, failed = drained.report.embedded, drained.report.failed
        stored = Document.objects.filter(collection=collection, status=DocumentStatus.EMBEDDED)
        if failed:
            raise CapacityError(f"{failed} of {documents} load documents failed: fix the model first (see the admin)")
        if stored.count() > embedded:
            raise CapacityError(
                f"other workers embedded {stored.count() - embedded} of the load documents (a django-q2 drain "
                "task?): the figure would be wrong. Stop the cluster's workers and measure again."
            )
        rate, span = _sustained_rate(list(stored.values_list("last_embedded_at", flat=True)), drained.started)
        return Point(workers, round(rate, 3), embedded, drained.report.chunks, round(span, 3))
    finally:
        collection.delete()


def warm_up(model: str) -> None:
    """Load LiteLLM and a local model's weights in this process before forking, without embedding
    anything: an embedding call starts threads (LiteLLM's logging, torch's OpenMP pool), and a
    worker forked from a process with threads can hang (the MiniLM workers did, on their first batch)."""
    global _local_model
    _local_model = model == providers.LOCAL_MODEL
    providers.preload(local_model=_local_model)


_local_model = False


def _ready() -> None:
    """Before the clock starts: the local encoder compiles its inference requests per process on its first
    call (pipeline.encoder), a one-off cost of a worker's start that a measured drain must not count (a
    long-running worker pays it once; benchmark_ingest's bare PyTorch encode is warmed up the same way)."""
    if _local_model:
        encoder.current().encode(["warm-up"])
