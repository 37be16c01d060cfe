"""Failure-handling benchmark: documents through a chaos provider, the pipeline and the
ReprocessingWorkflow on a simulated clock, then checks that nothing was lost or doubled."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Count, Min

from pipeline.choices import DocumentStatus
from pipeline.chunking import chunker_for
from pipeline.collections import create_collection
from pipeline.models import Chunk, Collection, WorkerHeartbeat
from pipeline.pipeline import EmbeddingIngestionPipeline, Report, RetryPolicy
from pipeline.queue import IncomingDocument, enqueue
from reprocessing.choices import FailureState
from reprocessing.models import FailedDocument
from reprocessing.workflow import ReprocessingWorkflow
from testing.fakeprovider import ChaosProvider

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma".split()


@dataclass
class BenchmarkResult:
    documents: int
    poison: int
    first_pass_seconds: float = 0.0
    first_pass: Report = field(default_factory=Report)
    rounds: int = 0
    reprocessed: int = 0
    reprocess_seconds: float = 0.0
    reprocess_pass: Report = field(default_factory=Report)
    calls: Counter[str] = field(default_factory=Counter)
    final: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def reprocess_docs_per_second(self) -> float:
        return self.reprocessed / self.reprocess_seconds if self.reprocess_seconds else 0.0


def _text(rng: random.Random, i: int, poison: bool) -> str:
    words = [f"doc{i}"] + [rng.choice(WORDS) + str(rng.randrange(1000)) for _ in range(rng.randrange(15, 150))]
    if poison:
        words.insert(len(words) // 2, "POISON")
    return " ".join(words)


class WorkersRunning(Exception):
    """Pipeline workers share the database: they would take part of the benchmark's documents."""


def run(
    documents: int = 1000,
    failure_rate: float = 0.2,
    poison: int = 10,
    seed: int = 7,
    keep: bool = False,
    progress: Callable[[str], None] = lambda _: None,
) -> BenchmarkResult:
    # Their own retry waits and circuit breaker hold documents past the simulated clock's rounds: the
    # checks then found documents still processing or deferred, and failed one run in two.
    if workers := list(WorkerHeartbeat.objects.alive().order_by("worker").values_list("worker", flat=True)):
        raise WorkersRunning(
            f"pipeline workers are running on this database ({', '.join(workers)}): they would claim part of the "
            "benchmark's documents and its checks would fail. Stop them (make run's, a deployment's) or point "
            "DATABASE_URL at a scratch database."
        )
    rng = random.Random(seed)
    provider = ChaosProvider(dims=16, failure_rate=failure_rate, seed=seed, slow_seconds=1.0).start()
    result = BenchmarkResult(documents=documents, poison=poison)
    collection = create_collection(
        name=f"bench-failures-{uuid.uuid4().hex[:8]}",
        model="openai/chaos",
        # No key variable: the placeholder key goes to the chaos provider, which ignores it.
        api_base=provider.api_base,
        dimensions=16,
        chunk_unit="characters",
        chunk_size=200,
        chunk_overlap=0,
        batch_size=16,
        # A quarter-second client timeout against the provider's 1 s "timeout" answers.
        extra_params={"timeout": 0.25},
    )
    try:
        poisoned = set(rng.sample(range(documents), poison))
        texts = {f"d{i:05d}": _text(rng, i, i in poisoned) for i in range(documents)}
        enqueue(collection, [IncomingDocument(k, v) for k, v in texts.items()])
        # Fast in-batch retries: the benchmark measures the pipeline, not the provider's patience.
        retry = RetryPolicy.from_settings(base_seconds=0.0, max_wait=0.0)
        pipeline = EmbeddingIngestionPipeline(claim_batch=64, retry=retry)
        started = time.perf_counter()
        result.first_pass = pipeline.drain()
        result.first_pass_seconds = time.perf_counter() - started
        progress(f"first pass: {result.first_pass.embedded} embedded, {result.first_pass.failed} failed")
        workflow = ReprocessingWorkflow(collection=collection)
        mine = FailedDocument.objects.filter(document__collection=collection)
        while (due_at := mine.filter(state=FailureState.OPEN).aggregate(t=Min("next_retry_at"))["t"]) is not None:
            # The simulated clock jumps to the next every-minute workflow run with work due.
            started = time.perf_counter()
            requeued = sum(workflow.run_once(now=due_at + timedelta(minutes=1)).retried.values())
            report = pipeline.drain()
            result.reprocess_seconds += time.perf_counter() - started
            result.reprocess_pass.add(report)
            result.reprocessed += requeued
            result.rounds += 1
            progress(f"round {result.rounds}: requeued {requeued}, embedded {report.embedded}, failed {report.failed}")
        result.calls = provider.calls
        result.problems = check(collection, texts, poisoned)
        result.final = dict(collection.documents.values_list("status").annotate(n=Count("id")))
        result.final["dead_lettered"] = mine.filter(state=FailureState.DEAD_LETTERED).count()
    finally:
        provider.stop()
        if not keep:
            collection.delete()
    return result


def check(collection: Collection, texts: dict[str, str], poisoned: set[int]) -> list[str]:
    """Every document embedded or dead-lettered; chunk counts exact; no duplicate chunk."""
    problems = []
    chunker = chunker_for(collection)
    dead_lettered = FailedDocument.objects.filter(document__collection=collection, state=FailureState.DEAD_LETTERED)
    dead = set(dead_lettered.values_list("document__external_id", flat=True))
    stored = collection.documents.annotate(n=Count("chunks")).values_list("external_id", "status", "n")
    for external_id, status, chunks in stored:
        expected = len(chunker.chunk_many([texts[external_id]])[0])
        if status == DocumentStatus.EMBEDDED:
            if chunks != expected:
                problems.append(f"{external_id}: {chunks} chunks, expected {expected}")
        elif status == DocumentStatus.FAILED and external_id in dead:
            if chunks:
                problems.append(f"{external_id}: dead-lettered but has chunks")
        else:
            problems.append(f"{external_id}: ended {status}, neither embedded nor dead-lettered")
    if len(stored) != len(texts):
        problems.append(f"{len(stored)} documents stored, {len(texts)} enqueued")
    pairs = Chunk.objects.filter(collection=collection).values("document", "ordinal").annotate(n=Count("id"))
    if duplicates := pairs.filter(n__gt=1).count():
        problems.append(f"{duplicates} duplicate (document, ordinal) chunks")
    poisoned_ids = {f"d{i:05d}" for i in poisoned}
    if not poisoned_ids <= dead:
        problems.append(f"poison documents not dead-lettered: {sorted(poisoned_ids - dead)}")
    return problems
