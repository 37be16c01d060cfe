"""Ingest a corpus into fresh collections and print docs/s, chunks/s, per-stage seconds, peak RSS, and the ratio
to one plain binary COPY of the same rows (the floor). --workers 1,2,4 simulates scale-out."""

from __future__ import annotations

import contextlib
import itertools
import json
import statistics
from dataclasses import asdict
from typing import Any

import psutil
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pipeline import encoder, loadharness, providers
from pipeline.models import Collection, Document
from testing.benchmarks import ingest as benchmark


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--corpus", default="django-docs", help="django-docs, or a folder of text files")
        parser.add_argument("--model", default="local/hash-384")
        parser.add_argument("--docs", type=int, help="Use only the first N documents")
        parser.add_argument(
            "--workers",
            default="auto",
            help="Worker processes, or a comma list (1,2,4); auto = 1 for the local model, else 2",
        )
        parser.add_argument(
            "--mode",
            default="steady",
            help="steady (the HNSW index present while writing), backfill (first load indexed once at the end), "
            "or both: steady,backfill",
        )
        parser.add_argument(
            "--rerun",
            action="store_true",
            help="Then enqueue the unchanged corpus again, 5 times: rerun_seconds is the median enqueue call",
        )
        parser.add_argument(
            "--provider-latency",
            type=float,
            default=None,
            metavar="MS",
            help="Embed through a local fake OpenAI-compatible server (testing.fakeprovider) answering each call "
            "after MS milliseconds, as a remote provider; --model is then ignored",
        )
        parser.add_argument(
            "--provider-concurrency",
            type=int,
            default=1,
            metavar="N",
            help="With --provider-latency: the collection's provider_concurrency, embedding calls a worker "
            "makes at once for one batch (1 to 32)",
        )
        parser.add_argument("--keep", action="store_true", help="Keep the benchmark collections")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **o: Any) -> None:
        try:
            providers.known_dimensions(o["model"])
        except providers.UnknownLocalModel as exc:
            raise CommandError(str(exc)) from None
        if o["workers"] == "auto":
            counts = [1 if o["model"] == providers.LOCAL_MODEL else 2]
        else:
            try:
                counts = [int(n) for n in o["workers"].split(",")]
            except ValueError:
                raise CommandError("--workers takes a number or a comma list such as 1,2,4") from None
            if any(n < 1 or n > 32 for n in counts):
                raise CommandError("--workers must be between 1 and 32")
        modes = [m.strip() for m in o["mode"].split(",")]
        if not modes or any(m not in benchmark.MODES for m in modes):
            raise CommandError(f"--mode takes {' or '.join(benchmark.MODES)}, or both separated by a comma")
        if not 1 <= o["provider_concurrency"] <= 32:
            raise CommandError("--provider-concurrency must be between 1 and 32")
        if o["provider_concurrency"] > 1 and o["provider_latency"] is None:
            raise CommandError("--provider-concurrency needs --provider-latency: local models make one call at a time")
        if o["docs"] is not None and o["docs"] < 1:
            raise CommandError("--docs must be at least 1")
        try:
            corpus = benchmark.open_corpus(o["corpus"], o["docs"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if not corpus:
            raise CommandError(f"the corpus {o['corpus']!r} has no files")

        if Document.objects.claimable().exclude(collection__name__startswith="benchmark-").exists():
            # The drain takes whatever is queued: never embed (and time) someone else's documents.
            raise CommandError("other documents are waiting in the queue; run this on an idle database")

        with contextlib.ExitStack() as stack:
            provider = None
            if o["provider_latency"] is not None:
                provider = stack.enter_context(benchmark.remote_provider(o["provider_latency"] / 1000))
                provider["provider_concurrency"] = o["provider_concurrency"]
                o["model"] = benchmark.REMOTE_MODEL
            self.run(o, corpus, counts, modes, provider)

    def run(
        self, o: dict, corpus: benchmark.Corpus, counts: list[int], modes: list[str], provider: dict | None
    ) -> None:
        loadharness.warm_up(o["model"])
        result = benchmark.BenchmarkResult(corpus=o["corpus"], model=o["model"])
        result.provider_latency_ms = o["provider_latency"] or 0.0
        result.provider_concurrency = o["provider_concurrency"]
        result.baseline_rss_mb = round(psutil.Process().memory_info().rss / 2**20, 1)
        names = []
        for mode, n in itertools.product(modes, counts):
            name = f"benchmark-{mode}-{n}w"
            names.append(name)
            run = benchmark.run_once(name, o["model"], corpus, n, mode=mode, provider=provider)
            collection = Collection.objects.get(name=name)
            floor = run.documents / benchmark.copy_floor(collection)
            run.floor_docs_per_second = round(floor, 2)
            run.ratio_to_floor = round(run.docs_per_second / floor, 3)
            if n > 1 and mode == "steady":
                # N writers into an indexed table: the limit for steady mode only (a backfill writes without the index).
                ceiling = run.documents / benchmark.copy_floor(collection, writers=n)
                run.ceiling_docs_per_second = round(ceiling, 2)
                run.ratio_to_ceiling = round(run.docs_per_second / ceiling, 3)
            result.runs.append(run)
        best = max(result.runs, key=lambda r: r.docs_per_second)
        best_collection = Collection.objects.get(name=f"benchmark-{best.mode}-{best.workers}w")
        result.floor_seconds = round(benchmark.copy_floor(best_collection), 3)
        result.floor_docs_per_second = round(best.documents / result.floor_seconds, 2)
        result.ratio_to_floor = round(best.docs_per_second / result.floor_docs_per_second, 3)
        if o["rerun"]:
            result.rerun_samples = [round(s, 4) for s in benchmark.rerun(best_collection, corpus)]
            result.rerun_seconds = round(statistics.median(result.rerun_samples), 4)
        # ru_maxrss (KiB, sampled by the kernel) can trail the RSS read earlier by a page or two.
        peak = max(loadharness.peak_rss_mb(), result.baseline_rss_mb, *(r.worker_peak_rss_mb for r in result.runs))
        result.peak_rss_mb = round(peak, 1)
        if o["model"] == providers.LOCAL_MODEL:
            # After the peak RSS: the reference loads torch into this process.
            result.local_runtime = encoder.label(encoder.current())
            cpu: list[float] = []
            # The baseline: one COPY of the same rows plus the bare encode of the same chunks.
            bare = result.floor_seconds + benchmark.bare_encode_seconds(best_collection, cpu)
            result.bare_encode_docs_per_second = round(best.documents / bare, 2)
            result.ratio_to_bare_encode = round(best.docs_per_second / result.bare_encode_docs_per_second, 3)
            result.ratio_to_bare_encode_cpu = round(cpu[0] / best.cpu_seconds, 3)
        if not o["keep"]:
            for collection in Collection.objects.filter(name__in=names):
                collection.delete()

        if o["json"]:
            self.stdout.write(json.dumps(asdict(result), indent=2))
            return
        remote = ""
        if result.provider_latency_ms:
            remote = f", provider answering after {result.provider_latency_ms:.0f} ms, "
            remote += f"{result.provider_concurrency} call(s) at once per batch"
        self.stdout.write(f"corpus {result.corpus}, model {result.model}, {len(corpus)} files{remote}")
        for r in result.runs:
            stages = ", ".join(f"{k} {v:.2f}s" for k, v in r.stage_seconds.items())
            ceiling = ""
            if r.ceiling_docs_per_second:
                ceiling = f"; {r.ratio_to_ceiling:.2f}x the ceiling of {r.workers} concurrent COPYs, "
                ceiling += f"{r.ceiling_docs_per_second:.1f} docs/s = "
                ceiling += f"{r.ceiling_docs_per_second / r.floor_docs_per_second:.2f}x the floor"
            cpu = f", CPU busy {r.cpu_busy:.0%}" if r.cpu_busy is not None else ""
            self.stdout.write(
                f"{r.mode}, workers {r.workers}: {r.docs_per_second:.1f} docs/s ({r.ratio_to_floor:.2f}x its floor "
                f"of {r.floor_docs_per_second:.1f}{ceiling}{cpu}), {r.chunks_per_second:.0f} chunks/s, {r.documents} "
                f"of {r.enqueued} docs / {r.chunks} chunks drained in {r.drain_seconds:.2f}s (enqueue "
                f"{r.enqueue_seconds:.2f}s, drain CPU {r.cpu_seconds:.1f}s); stage seconds (all workers): {stages}; "
                f"double-processed {r.double_processed}, superseded {r.superseded}; "
                f"worker peak RSS {r.worker_peak_rss_mb:.0f} MB, unique {r.worker_uss_mb:.0f} MB"
            )
        self.stdout.write(
            f"floor (one binary COPY, same rows, same indexes): {result.floor_seconds:.2f}s = "
            f"{result.floor_docs_per_second:.1f} docs/s; ours/floor = {result.ratio_to_floor:.2f}"
        )
        if result.rerun_seconds is not None:
            self.stdout.write(
                f"re-run of the unchanged corpus: enqueue call {result.rerun_seconds:.3f}s (median of "
                f"{', '.join(f'{s:.3f}' for s in result.rerun_samples)})"
            )
        if result.bare_encode_docs_per_second is not None:
            self.stdout.write(
                f"local model on {result.local_runtime}; one COPY + bare PyTorch encode of the same chunks: "
                f"{result.bare_encode_docs_per_second:.2f} docs/s; "
                f"ours/(COPY + bare PyTorch) = {result.ratio_to_bare_encode:.2f} "
                f"({result.ratio_to_bare_encode_cpu:.2f} per CPU-second of the encode)"
            )
        self.stdout.write(
            f"memory: {result.baseline_rss_mb:.0f} MB resident before the first document "
            f"(interpreter, Django, LiteLLM, provider); peak RSS (any process) {result.peak_rss_mb:.0f} MB, "
            f"{result.peak_rss_mb - result.baseline_rss_mb:+.0f} MB while ingesting"
        )
