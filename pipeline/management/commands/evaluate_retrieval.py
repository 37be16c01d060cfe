from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pipeline.access import add_as_user, collection_for
from pipeline.choices import SearchMode
from pipeline.embedding import PipelineError
from pipeline.models import METRICS
from pipeline.quality import evaluate, unknown_answers, unknown_warning


class Command(BaseCommand):
    help = "Run a collection's golden queries through search; print and store recall@1/5/10, MRR@10, nDCG@10."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--collection", required=True)
        add_as_user(parser)
        parser.add_argument("--mode", choices=SearchMode.values, help="Default: the collection's search mode")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **o: Any) -> None:
        collection = collection_for(o["collection"], o["as_user"])
        try:
            run = evaluate(collection, o["mode"])
        except ValidationError as exc:
            raise CommandError(exc.messages[0]) from None
        except PipelineError as exc:
            raise CommandError(f"embedding a query failed: {exc}") from None
        unknown = unknown_answers(collection)
        if o["json"]:
            figures = {"collection": collection.name, "mode": run.mode, "queries": run.queries, **run.figures()}
            self.stdout.write(json.dumps({**figures, "unknown_answers": unknown}, indent=2))
            return
        self.stdout.write(f"{collection.name} ({run.mode}, {run.queries} queries)")
        for metric in METRICS:
            self.stdout.write(f"  {metric:<13} {getattr(run, metric):.4f}")
        if unknown:
            self.stderr.write(unknown_warning(collection, unknown))
