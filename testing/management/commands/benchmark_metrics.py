"""Benchmark the metrics: /metrics scrape time over a large pending backlog, and the overhead recording metrics
adds to ingestion. Uses its own collections and deletes them."""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

import numpy as np
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from embedportal.metrics import multiprocess_dir
from embedportal.scratch import ScratchUnavailable, scratch_database
from pipeline import collectors, metrics
from pipeline.collections import create_collection
from pipeline.models import Collection, Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from testing.benchmarks import scrape

MINIMUMS = {"documents": 0, "requests": 1, "test_results": 0, "ingest_documents": 0, "rounds": 1}


class _Null:
    """Stands in for pipeline.metrics and its metrics: any attribute or call is itself, recording nothing."""

    def __getattr__(self, name: str) -> _Null:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> _Null:
        return self


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--documents", type=int, default=100_000, help="Pending documents for the scrape test")
        parser.add_argument("--requests", type=int, default=20, help="Scrapes timed")
        parser.add_argument(
            "--test-results", type=int, default=0, help="Then time the scrape again over this many stored test results"
        )
        parser.add_argument("--ingest-documents", type=int, default=300, help="Documents per ingestion round (0: skip)")
        parser.add_argument("--rounds", type=int, default=5, help="Ingestion rounds with metrics on and off each")

    def handle(self, *args: Any, **o: Any) -> None:
        for option, least in MINIMUMS.items():
            if o[option] < least:
                flag = "--" + option.replace("_", "-")
                raise CommandError(f"{flag} must be at least {least} (got {o[option]})")
        try:
            # The backlog, the VACUUM and the ingestion rounds (which drain the whole queue) stay out of production.
            with scratch_database():
                self._measure(o)
        except ScratchUnavailable as exc:
            raise CommandError(str(exc)) from None

    def _measure(self, o: dict[str, Any]) -> None:
        tag = uuid.uuid4().hex[:8]
        history = None
        try:
            self._scrape(f"bench-metrics-{tag}", o["documents"], o["requests"])
            if o["test_results"]:
                started = time.perf_counter()
                history = scrape.test_history(o["test_results"])
                self.stdout.write(f"Inserted {o['test_results']} test results in {time.perf_counter() - started:.1f} s")
                self._time_scrapes(f"with {o['test_results']} test results", o["requests"], o["documents"])
            if o["ingest_documents"]:
                self._ingest(f"bench-ingest-{tag}", o["ingest_documents"], o["rounds"])
        finally:
            for collection in Collection.objects.filter(name__endswith=tag):
                collection.delete()
            if history is not None:
                history.delete()

    def _scrape(self, name: str, documents: int, requests: int) -> None:
        started = time.perf_counter()
        scrape.queue_backlog(name, documents)
        with connection.cursor() as cur:
            cur.execute("ANALYZE pipeline_document")
        self.stdout.write(f"Inserted {documents} pending documents in {time.perf_counter() - started:.1f} s")
        self._time_scrapes("after ANALYZE", requests, documents)
        with connection.cursor() as cur:
            # Index-only scans need the visibility map; autovacuum sets it in production.
            cur.execute("VACUUM (ANALYZE) pipeline_document")
        self._time_scrapes("after VACUUM", requests, documents)

    def _time_scrapes(self, label: str, requests: int, documents: int) -> None:
        try:
            times, body = scrape.scrape_times(requests)
        except RuntimeError as exc:  # /metrics refused the scrape
            raise CommandError(str(exc)) from None
        prefix = collectors.QUEUE_DEPTH + " "
        depth = next(float(line.split()[-1]) for line in body.splitlines() if line.startswith(prefix))
        if depth < documents:
            raise CommandError(f"queue depth {depth:g} < {documents}: the gauge is wrong")
        self.stdout.write(
            f"/metrics {label}: median {statistics.median(times):.1f} ms, p95 {np.percentile(times, 95):.1f} ms, "
            f"max {max(times):.1f} ms over {requests} requests ({len(body)} bytes, queue depth {depth:g}, "
            f"multiprocess={'yes' if multiprocess_dir() else 'no'})"
        )

    def _ingest(self, name: str, documents: int, rounds: int) -> None:
        collection = create_collection(
            name=name, model="local/hash-64", chunk_unit="characters", chunk_size=400, chunk_overlap=40, batch_size=64
        )
        texts = [IncomingDocument(f"doc-{i}", f"Paragraph {i} of the benchmark. " * 40) for i in range(documents)]
        enqueue(collection, texts)
        timings: dict[str, list[float]] = {"on": [], "off": []}
        # One worker id for both: the "off" pipeline records into a stand-in that does nothing.
        pipeline = EmbeddingIngestionPipeline()
        pipelines = {"on": pipeline, "off": EmbeddingIngestionPipeline(pipeline.worker_id, recorder=_Null())}
        pipeline.drain()  # warm-up round: chunker, provider registration, connection
        for _ in range(rounds):
            for mode in ("on", "off"):  # interleaved, so drift in the machine hits both alike
                Document.objects.filter(collection=collection).requeue()
                t0 = time.perf_counter()
                report = pipelines[mode].drain()
                timings[mode].append(time.perf_counter() - t0)
                if report.embedded != documents:
                    raise CommandError(f"round embedded {report.embedded} of {documents} documents")
        on, off = statistics.median(timings["on"]), statistics.median(timings["off"])
        self.stdout.write(
            f"Ingestion of {documents} documents, median of {rounds} rounds: metrics on {on * 1000:.0f} ms, "
            f"off {off * 1000:.0f} ms, overhead {100 * (on - off) / off:+.1f}% "
            f"(on: {', '.join(f'{t * 1000:.0f}' for t in timings['on'])}; "
            f"off: {', '.join(f'{t * 1000:.0f}' for t in timings['off'])} ms)"
        )
        # The end-to-end difference is within run-to-run noise; time the recording itself too.
        calls = self._recording_seconds(documents)
        self.stdout.write(
            f"Recording the metrics of {documents} documents directly: {calls * 1000:.2f} ms "
            f"({100 * calls / off:.2f}% of the ingestion time without metrics)"
        )

    @staticmethod
    def _recording_seconds(documents: int, repeat: int = 20) -> float:
        """What the pipeline records per document (4 stage observations, outcome, chunks, freshness)."""
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            for stage in ("chunking", "embedding", "storage", "total"):
                metrics.observe_stage(stage, 0.01, documents, "benchmark")
            for _ in range(documents):
                metrics.DOCUMENTS.labels(outcome="embedded", collection="benchmark").inc()
                metrics.CHUNKS.inc(3)
                metrics.FRESHNESS_LAG.observe(60.0)
            best = min(best, time.perf_counter() - t0)
        return best
