from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from embedportal.printable import printable
from pipeline import providers
from pipeline.access import add_as_user, collection_for
from pipeline.backfill import serving
from pipeline.choices import SearchMode
from pipeline.embedding import PipelineError
from pipeline.search import MAX_QUERY_CHARS, search


class Command(BaseCommand):
    help = "Search a collection (vector, keyword or hybrid): the k best chunks or documents, best first."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("query")
        parser.add_argument("--collection", required=True)
        add_as_user(parser)
        parser.add_argument("--k", type=int, default=5)
        parser.add_argument("--mode", choices=SearchMode.values, help="Default: the collection's search mode")
        parser.add_argument("--by-document", action="store_true", help="The k best documents, each as its best chunk")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **o: Any) -> None:
        if not o["query"].strip():
            raise CommandError("the query is empty")
        if len(o["query"]) > MAX_QUERY_CHARS:
            raise CommandError(f"the query has {len(o['query'])} characters; at most {MAX_QUERY_CHARS}")
        if not 1 <= o["k"] <= 100:
            raise CommandError("--k must be between 1 and 100")
        collection = collection_for(o["collection"], o["as_user"])
        # A one-off process loads LiteLLM and a local model first: their seconds are not the search's,
        # and timed with it they put the search latency SLO and the optimizer's search p95 in seconds.
        providers.load(serving(collection).model)
        try:
            hits = search(collection, o["query"], o["k"], "cli", o["by_document"], o["mode"], fallback=True)
        except PipelineError as exc:
            raise CommandError(f"embedding the query failed: {exc}") from None  # a PipelineError is escaped
        if hits.fallback:
            self.stderr.write(f"The query could not be embedded ({hits.fallback}): ranked by keywords alone.")
        if o["json"]:
            self.stdout.write(json.dumps([h.as_dict() for h in hits], indent=2))
            return
        for rank, hit in enumerate(hits, 1):
            # Documents' text as it is would pass its escape sequences to the terminal.
            snippet = printable(" ".join(hit.text.split())[:200])
            ident = printable(hit.document_id)  # checked at enqueue since 7 December 2026, not before
            self.stdout.write(f"{rank}. {ident} #{hit.ordinal}  score {hit.score:.4f}\n   {snippet}")
        if not hits:
            self.stdout.write("No results (is the collection embedded yet?).")
