from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pipeline import providers, sources
from pipeline.choices import DocumentStatus
from pipeline.models import Chunk, Collection, Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from pipeline.search import search

SAMPLE_CORPUS = ["README.md", "docs/**/*.md"]


class Command(BaseCommand):
    help = (
        "Run the pipeline once on the sample corpus (README.md and docs/**/*.md, repeated --copies times "
        "so the throughput is measured over real work) into a fresh `demo` collection. The model is "
        "loaded before the clock starts and its load time printed on its own."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", default="local/all-MiniLM-L6-v2")
        parser.add_argument("--query", default="How do I run the tests?")
        # 3 copies of the ~20 files (~140k characters each): ~60 documents and ~800 chunks, about
        # 40 s of embedding with the local model on 2 idle cores (2 min on 2 busy ones).
        parser.add_argument("--copies", type=int, default=3, help="Times the sample corpus is ingested")

    def handle(self, *args: Any, **o: Any) -> None:
        if o["copies"] < 1:
            raise CommandError("--copies must be at least 1")
        root = Path(settings.BASE_DIR)
        Collection.objects.filter(name="demo").delete()
        call_command("create_collection", "demo", model=o["model"], strategy="markdown", stdout=self.stdout)
        collection = Collection.objects.get(name="demo")

        corpus = self.sample_corpus(root, collection.contextual_chunks)
        # Each copy under its own id prefix: distinct documents with the same text, same work.
        copied = [
            replace(d, external_id=f"copy-{n}/{d.external_id}") for n in range(1, o["copies"] + 1) for d in corpus
        ]
        result = enqueue(collection, copied)
        chars = sum(len(doc.text) for doc in corpus) * o["copies"]
        self.stdout.write(
            f"Enqueued: {result.accepted} documents ({o['copies']} x {len(corpus)} files), {chars} characters"
        )

        self.stdout.write(f"Model load: {providers.load(collection.model):.2f} s (not in the timing below)")
        started = time.perf_counter()
        pipeline = EmbeddingIngestionPipeline()
        pipeline.drain()
        # A running portal's workers (make run) share the queue: the figures wait for the documents they
        # claimed, and a lease that expires meanwhile (a worker killed) is drained here.
        documents = Document.objects.filter(collection=collection)
        if claimed := documents.filter(status=DocumentStatus.PROCESSING).count():
            self.stdout.write(f"Waiting for {claimed} document(s) other workers claimed (is the portal running?)")
        while documents.filter(status=DocumentStatus.PROCESSING).exists():
            time.sleep(0.2)
            pipeline.drain()
        seconds = time.perf_counter() - started
        docs = documents.filter(status=DocumentStatus.EMBEDDED).count()
        chunks = Chunk.objects.filter(collection=collection).count()
        self.stdout.write(
            f"Documents: {docs}\nChunks: {chunks}\nSeconds: {seconds:.2f}\n"
            f"Docs/s: {docs / seconds if seconds else 0:.2f}\nChunks/s: {chunks / seconds if seconds else 0:.2f}\n"
            f"Failed: {documents.filter(status=DocumentStatus.FAILED).count()}"
        )
        for hit in search(collection, o["query"], 1):  # the best hit, if any
            snippet = " ".join(hit.text.split())[:160]
            self.stdout.write(f'Search "{o["query"]}": {hit.document_id} (score {hit.score:.3f}): {snippet}')

    def sample_corpus(self, root: Path, contextual: bool) -> list[IncomingDocument]:
        paths = sources.expand([str(root / pattern) for pattern in SAMPLE_CORPUS])
        corpus = []
        for path in paths:
            for item in sources.read(path, root, contextual):
                if isinstance(item, sources.Rejected):
                    self.stderr.write(f"skipped {item.where}: {item.reason}")
                else:
                    corpus.append(item)
        return corpus
