"""Search latency on a large collection: chunks of hash vectors written by one binary COPY and indexed once, then
N queries through the real search path; p50/p95/p99, recall@k against an exact scan, and whether the plan uses
the collection's HNSW index."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pipeline.choices import SearchMode
from pipeline.models import Collection
from testing.benchmarks import search as benchmark

NAME = "benchmark-search"


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chunks", type=int, default=100_000)
        parser.add_argument("--queries", type=int, default=500)
        parser.add_argument("-k", type=int, default=10)
        parser.add_argument("--recall-queries", type=int, default=20, help="Queries also run exactly (0: none)")
        parser.add_argument("--reuse", action="store_true", help=f"Query an existing {NAME} collection as it is")
        parser.add_argument("--keep", action="store_true", help="Keep the collection for later --reuse")
        parser.add_argument(
            "--modes",
            default=",".join(SearchMode.values),
            help="Search modes to measure, comma-separated (default: all)",
        )
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **o: Any) -> None:
        if o["chunks"] < 100 or o["queries"] < 1 or not 1 <= o["k"] <= 1000:
            raise CommandError("--chunks must be at least 100, --queries at least 1, -k from 1 to 1000")
        modes = [m.strip() for m in o["modes"].split(",")]
        if unknown := sorted(set(modes) - set(SearchMode.values)):
            raise CommandError(f"--modes: unknown {', '.join(unknown)}; use {', '.join(SearchMode.values)}")
        load = index = 0.0
        if o["reuse"]:
            collection = Collection.objects.filter(name=NAME).first()
            if collection is None:
                raise CommandError(f"no {NAME} collection to reuse: run once with --keep")
        else:
            collection, load, index = benchmark.build(NAME, o["chunks"])
        try:
            runs = [benchmark.measure(collection, o["queries"], o["k"], o["recall_queries"], mode=m) for m in modes]
        finally:
            if not o["keep"] and not o["reuse"]:
                collection.delete()
        for figures in runs:
            figures.load_seconds, figures.index_build_seconds = round(load, 2), round(index, 2)
        if o["json"]:
            self.stdout.write(json.dumps([asdict(f) for f in runs] if len(runs) > 1 else asdict(runs[0]), indent=2))
            return
        self.stdout.write(f"{runs[0].chunks} chunks (COPY {load:.1f}s, HNSW build {index:.1f}s)")
        for f in runs:
            recall = f"; recall@{f.k} {f.recall_at_k}" if f.recall_at_k is not None else ""
            self.stdout.write(
                f"{f.mode}: {f.queries} queries at k={f.k}: p50 {f.p50_ms:.1f} ms, p95 {f.p95_ms:.1f} ms, "
                f"p99 {f.p99_ms:.1f} ms (mean {f.mean_ms:.1f} ms){recall}; "
                f"index used: {'yes' if f.uses_index else 'NO'}"
            )
            if not f.uses_index:
                self.stdout.write(f.plan)
