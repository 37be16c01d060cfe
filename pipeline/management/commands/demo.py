from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from pipeline.models import Chunk, Collection, Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.search import search


class Command(BaseCommand):
    help = "Run the pipeline once on the sample corpus (README and docs/) into a fresh `demo` collection."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", default="local/all-MiniLM-L6-v2")
        parser.add_argument("--query", default="How do I run the tests?")

    def handle(self, *args: Any, **o: Any) -> None:
        root = Path(settings.BASE_DIR)
        Collection.objects.filter(name="demo").delete()
        call_command("create_collection", "demo", model=o["model"], strategy="markdown", stdout=self.stdout)
        paths = [str(root / "README.md"), str(root / "docs")]
        call_command("enqueue", *paths, collection="demo", base=str(root), no_progress=True, stdout=self.stdout)
        collection = Collection.objects.get(name="demo")
        started = time.perf_counter()
        report = EmbeddingIngestionPipeline().drain()
        seconds = time.perf_counter() - started
        docs = Document.objects.filter(collection=collection, status="embedded").count()
        chunks = Chunk.objects.filter(collection=collection).count()
        self.stdout.write(
            f"Documents: {docs}\nChunks: {chunks}\nSeconds: {seconds:.2f}\n"
            f"Docs/s: {docs / seconds if seconds else 0:.2f}\nFailed: {report.failed}"
        )
        hits = search(collection, o["query"], 1)
        if hits:
            hit = hits[0]
            snippet = " ".join(hit.text.split())[:160]
            self.stdout.write(f'Search "{o["query"]}": {hit.document_id} (score {hit.score:.3f}): {snippet}')
