"""The standard benchmark suite (`manage.py benchmark`): each benchmark repeated, stored as a
BenchmarkRun and compared with the same machine's history (docs/benchmarks.md, "Module notes")."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from django.db import connection
from django.utils import timezone

from embedportal.scratch import scratch_database
from embedportal.version import code_version
from pipeline import loadharness, providers
from pipeline.models import Collection
from testing import fingerprints
from testing.benchmarks import ingest, regression, scrape, stages
from testing.benchmarks import search as search_benchmark
from testing.choices import BenchmarkSuite, BenchmarkTrigger
from testing.models import BenchmarkRun

HASH_MODEL = "local/hash-384"
# Chunks from which search must be planned on the HNSW index.
INDEX_EXPECTED_FROM = 5000


@dataclass(frozen=True)
class Sizes:
    repeats: int
    ingest_docs: int | None
    minilm_docs: int
    search_chunks: int
    search_queries: int
    metrics_queued: int


SIZES = {
    BenchmarkSuite.QUICK: Sizes(
        repeats=3, ingest_docs=100, minilm_docs=8, search_chunks=10_000, search_queries=100, metrics_queued=10_000
    ),
    BenchmarkSuite.FULL: Sizes(
        repeats=5, ingest_docs=None, minilm_docs=50, search_chunks=100_000, search_queries=500, metrics_queued=100_000
    ),
}

Figures = dict[str, dict[str, Any]]


def figure(samples: list[float], better: str, unit: str) -> dict[str, Any]:
    samples = [round(float(s), 6) for s in samples]
    return {"samples": samples, "median": round(statistics.median(samples), 6), "better": better, "unit": unit}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    with connection.cursor() as cur:
        cur.execute("SHOW server_version")
        postgres = cur.fetchone()[0].split()[0]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30),
        "python": platform.python_version(),
        "postgres": postgres,
    }


def machine_fingerprint(described: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def stage_figures(repetitions: list[dict[str, dict[str, float]]]) -> Figures:
    """Per-stage p50/p95/p99 per document (testing.benchmarks.stages), a sample per repetition:
    informational, so the gate skips them."""
    return {
        stages.name(stage, q): {
            **figure([r[stage][q] for r in repetitions], "lower", "s"),
            "informational": True,
            "stage": stage,
            "quantile": q,
        }
        for stage in stages.STAGES
        for q in stages.QUANTILES
    }


def _ingest(
    name: str,
    model: str,
    corpus: ingest.Corpus,
    repeats: int,
    floor: Callable[[Collection], float] = ingest.copy_floor,
    ratio: str = "ratio_to_floor",
    rerun: bool = False,
    **opts: Any,
) -> Figures:
    """docs/s and its ratio to `floor` (seconds the collection's documents take at the least) per repetition;
    `rerun`: then the re-run of the same documents, reported as a benchmark of its own (see run_suite)."""
    rates, ratios, per_stage = [], [], []
    for _ in range(repeats):
        run = ingest.run_once(name, model, corpus, **opts)
        collection = Collection.objects.get(name=name)
        rates.append(run.docs_per_second)
        ratios.append(run.docs_per_second * floor(collection) / run.documents)
        per_stage.append(stages.percentiles(collection))  # the next run_once drops the collection
    figures = {"docs_per_second": figure(rates, "higher", "docs/s"), ratio: figure(ratios, "higher", "x")}
    if rerun:
        figures["rerun_seconds"] = figure(ingest.rerun(collection, corpus, repeats), "lower", "s")
    collection.delete()
    return {**figures, **stage_figures(per_stage)}


def _hash_ingest(mode: str, sizes: Sizes, corpus: ingest.Corpus, rerun: bool = False) -> Figures:
    return _ingest(f"benchmark-suite-{mode}", HASH_MODEL, corpus, sizes.repeats, rerun=rerun, workers=2, mode=mode)


def ingest_minilm(sizes: Sizes, corpus: ingest.Corpus) -> Figures:
    small = ingest.Corpus(corpus.root, corpus.paths[: sizes.minilm_docs])
    loadharness.warm_up(providers.LOCAL_MODEL)
    name, bare = "benchmark-suite-minilm", ingest.bare_encode_seconds
    return _ingest(name, providers.LOCAL_MODEL, small, sizes.repeats, bare, "ratio_to_bare_encode", workers=1)


def search(sizes: Sizes, corpus: ingest.Corpus) -> Figures:
    collection, _, _ = search_benchmark.build("benchmark-suite-search", sizes.search_chunks)
    try:
        runs = [
            # Vector search, as in every earlier run (benchmark_search measures each mode).
            search_benchmark.measure(collection, sizes.search_queries, 10, recall_queries=0, seed=seed)
            for seed in range(sizes.repeats)
        ]
        # Below a few thousand rows an exact scan is cheaper, and the planner rightly picks it.
        if sizes.search_chunks >= INDEX_EXPECTED_FROM and not all(r.uses_index for r in runs):
            raise RuntimeError(f"search is not planned on the HNSW index:\n{runs[0].plan}")
    finally:
        collection.delete()
    return {f"{q}_ms": figure([getattr(r, f"{q}_ms") for r in runs], "lower", "ms") for q in ("p50", "p95")}


def metrics(sizes: Sizes, corpus: ingest.Corpus) -> Figures:
    collection = scrape.queue_backlog("benchmark-suite-metrics", sizes.metrics_queued)
    try:
        with connection.cursor() as cur:
            cur.execute("VACUUM (ANALYZE) pipeline_document")
        p95s = [float(np.percentile(scrape.scrape_times(10)[0], 95)) for _ in range(sizes.repeats)]
    finally:
        collection.delete()
    return {"scrape_p95_ms": figure(p95s, "lower", "ms")}


# A changed collection's own workload: its newest documents' text, ingested with its fields into a copy.
SAMPLE_DOCUMENTS = 50
NOT_COPIED = {"id", "name", "team", "paused"}


def workload(name: str, folder: Path) -> tuple[dict[str, Any], ingest.Corpus | None]:
    """A collection's fields and a corpus of its newest documents' text in `folder` (None when it has
    none yet), read from production before the run moves to the scratch database."""
    collection = Collection.objects.filter(name=name).first()
    if collection is None:
        raise ValueError(f"no collection named {name!r}")
    fields = Collection._meta.concrete_fields
    config = {f.attname: getattr(collection, f.attname) for f in fields if f.editable and f.name not in NOT_COPIED}
    texts = collection.documents.order_by("-pk").values_list("text", flat=True)[:SAMPLE_DOCUMENTS]
    folder.mkdir()
    paths = [folder / f"document-{i}.txt" for i in range(len(texts))]
    for path, text in zip(paths, texts, strict=True):
        path.write_text(text, encoding="utf-8")
    return config, ingest.Corpus(folder, paths) if paths else None


def collection_benchmark(config: dict[str, Any], corpus: ingest.Corpus, sizes: Sizes) -> Figures:
    loadharness.warm_up(config["model"])
    return _ingest("benchmark-collection", "", corpus, sizes.repeats, workers=1, config=config)


BENCHMARKS: dict[str, Callable[[Sizes, ingest.Corpus], Figures]] = {
    "ingest_steady": partial(_hash_ingest, "steady", rerun=True),
    "ingest_backfill": partial(_hash_ingest, "backfill"),
    "ingest_minilm": ingest_minilm,
    "search": search,
    "metrics": metrics,
}


def run_suite(
    suite: str,
    trigger: str = BenchmarkTrigger.CLI,
    note: str = "",
    only: list[str] | None = None,
    progress: Callable[[str], None] = lambda message: None,
    corpus: str = "django-docs",
    collections: list[str] | None = None,
) -> BenchmarkRun:
    """Run the suite, or the `collections`' own workloads (benchmark `collection:<name>`), on the
    scratch database (embedportal.scratch); store the run in production and compare it with this
    machine's history. Production's queue, activity and tables see nothing of it."""
    sizes = SIZES[BenchmarkSuite(suite)]
    if collections:  # compared with the workload runs only: a burst of them leaves the suite's history alone
        suite = BenchmarkSuite.WORKLOAD
    with tempfile.TemporaryDirectory() as folder:
        workloads = {name: workload(name, Path(folder, name)) for name in collections or []}
        needs_corpus = not collections or any(own is None for _, own in workloads.values())
        files = ingest.open_corpus(corpus, sizes.ingest_docs) if needs_corpus else None
        if collections:
            benchmarks = {
                f"collection:{name}": partial(collection_benchmark, config, own or files)
                for name, (config, own) in workloads.items()
            }
        else:
            wanted = [n for n in BENCHMARKS if not only or n in only or (n == "ingest_steady" and "rerun" in only)]
            benchmarks = {n: partial(BENCHMARKS[n], corpus=files) for n in wanted}
        started, t0 = timezone.now(), time.perf_counter()
        with scratch_database():
            loadharness.warm_up(HASH_MODEL)
            results: dict[str, Figures] = {}
            for name, benchmark in benchmarks.items():
                progress(f"{name} ...")
                figures = benchmark(sizes)
                if "rerun_seconds" in figures:  # measured on ingest_steady's collection, reported on its own
                    results["rerun"] = {"rerun_seconds": figures.pop("rerun_seconds")}
                if not only or name in only:
                    results[name] = figures
    return record(suite, trigger, note, started, time.perf_counter() - t0, results)


def record(
    suite: str, trigger: str, note: str, started: Any, seconds: float, results: dict[str, Figures]
) -> BenchmarkRun:
    """Store a run with its fingerprints and its comparison with the history of the same machine."""
    described = machine()
    run = BenchmarkRun(
        suite=suite,
        trigger=trigger,
        note=note[:300],
        started_at=started,
        duration_seconds=round(seconds, 2),
        code_version=code_version(),
        config_fingerprint=fingerprints.settings_fingerprint(),
        machine_fingerprint=machine_fingerprint(described),
        machine=described,
        results=results,
    )
    earlier = regression.history(run.machine_fingerprint, suite, before=started)
    run.comparison = regression.compare(run, earlier)
    run.regressions = len(regression.regressions(run.comparison))
    run.save()
    return run
