"""Search latency on a large collection: chunks of hash vectors written by one binary COPY and indexed once, then
N queries through the real search path; p50/p95/p99, recall@k against an exact scan, and whether the plan uses
the collection's HNSW index."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

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
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **o: Any) -> None:
        if o["chunks"] < 100 or o["queries"] < 1 or not 1 <= o["k"] <= 1000:
            raise CommandError("--chunks must be at least 100, --queries at least 1, -k from 1 to 1000")
        load = index = 0.0
        if o["reuse"]:
            collection = Collection.objects.filter(name=NAME).first()
            if collection is None:
                raise CommandError(f"no {NAME} collection to reuse: run once with --keep")
        else:
            collection, load, index = benchmark.build(NAME, o["chunks"])
        try:
            figures = benchmark.measure(collection, o["queries"], o["k"], o["recall_queries"])
        finally:
            if not o["keep"] and not o["reuse"]:
                collection.delete()
        figures.load_seconds, figures.index_build_seconds = round(load, 2), round(index, 2)
        if o["json"]:
            self.stdout.write(json.dumps(asdict(figures), indent=2))
            return
        self.stdout.write(
            f"{figures.chunks} chunks (COPY {figures.load_seconds:.1f}s, "
            f"HNSW build {figures.index_build_seconds:.1f}s); "
            f"{figures.queries} queries at k={figures.k}: p50 {figures.p50_ms:.1f} ms, p95 {figures.p95_ms:.1f} ms, "
            f"p99 {figures.p99_ms:.1f} ms (mean {figures.mean_ms:.1f} ms); recall@{figures.k} {figures.recall_at_k}; "
            f"HNSW index used: {'yes' if figures.uses_index else 'NO'}"
        )
        if not figures.uses_index:
            self.stdout.write(figures.plan)
