"""The ingest benchmark: our pipeline against the floor of one binary COPY (docs/benchmarks.md, "Module notes")."""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from django.db import connection, connections

from pipeline import encoder, sources
from pipeline.chunking import ChunkText
from pipeline.collections import create_collection
from pipeline.loadharness import drain_forked
from pipeline.models import Chunk, Collection, Document, reserved_names
from pipeline.queue import IncomingDocument, enqueue
from testing import corpus as corpora
from testing.fakeprovider import FakeProvider


@dataclass
class RunFigures:
    mode: str
    workers: int
    enqueued: int
    documents: int
    chunks: int
    enqueue_seconds: float
    drain_seconds: float
    docs_per_second: float
    chunks_per_second: float
    stage_seconds: dict[str, float]
    claims: int
    double_processed: int
    superseded: int
    worker_peak_rss_mb: float
    worker_uss_mb: float
    # The floor timed right after this run on its rows: on a shared machine whose load drifts, a
    # run's ratio to its own floor is steadier than to one floor timed at the end.
    floor_docs_per_second: float = 0.0
    ratio_to_floor: float = 0.0
    # Steady mode with N > 1 workers: N concurrent COPYs of the same rows (copy_floor), what N
    # writers doing nothing else reach on this machine, and this run against it.
    ceiling_docs_per_second: float | None = None
    ratio_to_ceiling: float | None = None
    # The machine's CPU busy share during the drain (all cores, all processes): near 1, the run was CPU-bound.
    cpu_busy: float | None = None
    # CPU seconds the drain took (this process and its reaped workers): on a machine shared with
    # other jobs, docs per CPU-second compares runs and runtimes where wall-clock docs/s cannot.
    cpu_seconds: float = 0.0


@dataclass
class BenchmarkResult:
    corpus: str
    model: str
    runs: list[RunFigures] = field(default_factory=list)
    floor_seconds: float = 0.0
    floor_docs_per_second: float = 0.0
    ratio_to_floor: float = 0.0
    # The local model: the runtime/precision the pipeline embedded with (pipeline.encoder), and
    # one COPY of the same rows plus the bare PyTorch encode of the same chunks in the same run.
    local_runtime: str | None = None
    bare_encode_docs_per_second: float | None = None
    ratio_to_bare_encode: float | None = None
    # The same per CPU-second: the best run's docs per CPU-second over the bare encode's.
    ratio_to_bare_encode_cpu: float | None = None
    # Seconds of the enqueue call re-sending the unchanged corpus (median of the samples), if measured.
    rerun_seconds: float | None = None
    rerun_samples: list[float] = field(default_factory=list)
    provider_latency_ms: float = 0.0
    provider_concurrency: int = 1
    baseline_rss_mb: float = 0.0
    peak_rss_mb: float = 0.0


MODES = ("steady", "backfill")


class IngestFailed(RuntimeError):
    """No document of the run was embedded: there is no rate to report."""


def run_once(
    name: str,
    model: str,
    corpus: Corpus,
    workers: int,
    batch: int = 100,
    mode: str = "steady",
    provider: dict | None = None,
    config: dict | None = None,
) -> RunFigures:
    """One drain of the corpus into a fresh collection. `steady`: the HNSW index is present while the pipeline
    writes (a collection already in use); `backfill`: the first load is written without it and indexed once at
    the end, the build inside the timed drain (pipeline.backfill). `provider`: extra collection fields (api_base,
    api_key_env, dimensions) for a remote model; `config`: a collection's own fields, instead of ours."""
    Collection.objects.filter(name=name).delete()
    ours = {"chunking_strategy": "recursive", "chunk_unit": "characters", "chunk_size": 1000, "chunk_overlap": 100}
    fields = config or {"model": model, **ours, "batch_size": 64, **(provider or {})}
    with reserved_names():
        collection = create_collection(name=name, **fields)
    documents, enqueued, t0 = corpus.documents(), 0, time.perf_counter()
    while part := list(itertools.islice(documents, batch)):
        enqueue(collection, part, backfill_min=batch if mode == "backfill" else 0)
        enqueued += len(part)
    enqueue_seconds = time.perf_counter() - t0
    # The first call starts the interval the second measures (this module's only caller of cpu_percent).
    psutil.cpu_percent()
    cpu_before = cpu_seconds()
    drained = drain_forked(workers, "bench")
    cpu_busy, drain_cpu = round(psutil.cpu_percent() / 100, 3), cpu_seconds() - cpu_before
    report, drain_seconds = drained.report, drained.seconds
    docs = Document.objects.filter(collection=collection)
    embedded = docs.filter(status="embedded").count()
    if not embedded:  # a workload of documents that all fail has no rate (it was a ZeroDivisionError)
        why = docs.exclude(last_error="").values_list("last_error", flat=True).first() or "none stored"
        raise IngestFailed(f"none of the {enqueued} documents was embedded ({why[:300]})")
    chunks = Chunk.objects.filter(collection=collection).count()
    return RunFigures(
        mode=mode,
        workers=workers,
        enqueued=enqueued,
        documents=embedded,
        chunks=chunks,
        enqueue_seconds=round(enqueue_seconds, 3),
        drain_seconds=round(drain_seconds, 3),
        docs_per_second=round(embedded / drain_seconds, 2),
        chunks_per_second=round(chunks / drain_seconds, 1),
        stage_seconds={k: round(v, 3) for k, v in report.seconds.items()},
        claims=report.claimed,
        # Every document must have been claimed exactly once and stored once.
        double_processed=docs.filter(attempts__gt=1).count() + max(0, report.claimed - enqueued),
        superseded=report.claimed - report.embedded - report.failed,
        worker_peak_rss_mb=round(drained.peak_rss_mb, 1),
        worker_uss_mb=round(drained.uss_mb, 1),
        cpu_busy=cpu_busy,
        cpu_seconds=round(drain_cpu, 2),
    )


def rerun(collection: Collection, corpus: Corpus, repeats: int = 5) -> list[float]:
    """Seconds of each enqueue call re-sending the whole unchanged corpus (read beforehand: the
    call alone is timed, as a producer re-syncing its source would make it)."""
    docs = list(corpus.documents())
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = enqueue(collection, docs)
        samples.append(time.perf_counter() - t0)
        if result.created or result.updated:
            raise RuntimeError(f"re-run re-queued {len(result.created) + len(result.updated)} unchanged documents")
    return samples


FLOOR_TABLE = "benchmark_copy_floor"


def _export_rows(collection: Collection, writers: int) -> list[tempfile.TemporaryFile]:
    """The collection's chunk rows in binary COPY format, split by document into `writers` parts."""
    dims = int(collection.dimensions)
    parts = []
    with connection.cursor() as cur:
        for part in range(writers):
            buf = tempfile.TemporaryFile()
            with cur.cursor.copy(
                f"COPY (SELECT document_id, ordinal, text, token_count, embedding::vector({dims}) FROM pipeline_chunk "
                f"WHERE collection_id = {int(collection.pk)} AND document_id % {writers} = {part}) "
                "TO STDOUT WITH (FORMAT BINARY)"
            ) as copy:
                buf.writelines(copy)
            buf.seek(0)
            parts.append(buf)
    return parts


def _copy_in(buf: tempfile.TemporaryFile) -> None:
    """One writer: a binary COPY of `buf` into the floor table in one transaction, on its own connection."""
    with contextlib.closing(connections.create_connection("default")) as conn, conn.cursor() as cur:
        cur.execute("BEGIN")
        columns = "document_id, ordinal, text, token_count, embedding"
        with cur.cursor.copy(f"COPY {FLOOR_TABLE} ({columns}) FROM STDIN WITH (FORMAT BINARY)") as copy:
            while block := buf.read(1 << 20):
                copy.write(block)
        cur.execute("COMMIT")


def copy_floor(collection: Collection, writers: int = 1) -> float:
    """Seconds to write the collection's rows into an equivalently indexed table by plain binary COPY.

    writers=1 is the floor: one COPY. writers=N is the ceiling for N workers: N concurrent COPYs, each of a share
    of the documents, on their own connections. No pipeline with N workers can be faster than N writers that do
    nothing but write (it also chunks and embeds on the same cores)."""
    dims = int(collection.dimensions)
    parts = _export_rows(collection, writers)
    try:
        with connection.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
            cur.execute(
                f"CREATE UNLOGGED TABLE {FLOOR_TABLE} (id bigserial PRIMARY KEY, document_id bigint, "
                f"ordinal integer, text text, token_count integer, embedding vector({dims}))"
            )
            # UNLOGGED would flatter the floor; make it a normal table like pipeline_chunk.
            cur.execute(f"ALTER TABLE {FLOOR_TABLE} SET LOGGED")
            cur.execute(f"CREATE UNIQUE INDEX ON {FLOOR_TABLE} (document_id, ordinal)")
            cur.execute(f"CREATE INDEX ON {FLOOR_TABLE} USING hnsw (embedding vector_cosine_ops)")
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=writers) as pool:
            list(pool.map(_copy_in, parts))  # raises a writer's error
        seconds = time.perf_counter() - t0
    finally:
        for buf in parts:
            buf.close()
        with connection.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
    return seconds


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its reaped children so far."""
    return sum(os.times()[:4])  # user, system, children_user, children_system


def bare_encode_seconds(collection: Collection, cpu: list[float] | None = None) -> float:
    """The bare PyTorch encode (sentence-transformers, the reference runtime) of exactly the chunks the pipeline
    embedded, as the model saw them (with contextual chunks, the title and headings line before the text); its CPU
    seconds are appended to `cpu`. It starts torch's OpenMP pool: fork nothing after it."""
    texts = embedded_texts(collection)
    model = encoder.reference()
    model.encode(texts[:8])  # warm-up, as the pipeline's first batch was
    t0, cpu0 = time.perf_counter(), cpu_seconds()
    model.encode(texts)
    if cpu is not None:
        cpu.append(cpu_seconds() - cpu0)
    return time.perf_counter() - t0


def embedded_texts(collection: Collection) -> list[str]:
    """The stored chunks as the model embedded them (pipeline.chunking.ChunkText.embedded): the stored
    headings are the path already joined."""
    rows = Chunk.objects.filter(collection=collection).order_by("document_id", "ordinal")
    return [
        ChunkText(0, text, 0, title, (headings,) if headings else (), collection.contextual_chunks).embedded
        for text, title, headings in rows.values_list("text", "title", "headings")
    ]


REMOTE_MODEL = "openai/fake-embedder"


@contextlib.contextmanager
def remote_provider(latency_seconds: float) -> Iterator[dict]:
    """A local OpenAI-compatible server answering each call after `latency_seconds`, standing in
    for a remote provider; yields the collection fields that point at it. Forked workers reach
    it over HTTP in the benchmark process, which serves it from a thread."""
    dims = 384
    server = FakeProvider(dims=dims, record=False).start()
    server.delay = latency_seconds
    try:
        # No key variable: the server takes the placeholder key, as a keyless one (vLLM, TEI) would.
        yield {"api_base": server.api_base, "dimensions": dims}
    finally:
        server.stop()


@dataclass(frozen=True)
class Corpus:
    """Text files under `root`, read one at a time by the same reader as `manage.py enqueue`."""

    root: Path
    paths: list[Path]

    def __len__(self) -> int:
        return len(self.paths)

    def read(self) -> Iterator[IncomingDocument | sources.Rejected]:
        return (doc for path in self.paths for doc in sources.read(path, self.root))

    def documents(self) -> Iterator[IncomingDocument]:
        for doc in self.read():
            if isinstance(doc, sources.Rejected):
                raise ValueError(f"{doc.where}: {doc.reason}")
            yield doc


def open_corpus(corpus: str, limit: int | None) -> Corpus:
    """The corpus's files, checked up front so a bad file stops the benchmark before it starts."""
    if corpus != "django-docs":
        root = Path(corpus)
        if not root.is_dir():
            raise ValueError(f"unknown corpus {corpus!r}: use django-docs or a folder of text files")
        paths = list(sources.expand([str(root)]))
    else:
        paths, root = corpora.django_docs(), corpora.root()
    opened = Corpus(root, paths[:limit] if limit else paths)
    if rejected := [f"{doc.where}: {doc.reason}" for doc in opened.read() if isinstance(doc, sources.Rejected)]:
        more = f" (and {len(rejected) - 5} more)" if len(rejected) > 5 else ""
        raise ValueError("the corpus has files enqueue would reject: " + "; ".join(rejected[:5]) + more)
    return opened
