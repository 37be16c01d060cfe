from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from pipeline import sources
from pipeline.models import Collection
from pipeline.queue import EnqueueResult, IncomingDocument, enqueue


class Command(BaseCommand):
    help = (
        "Enqueue documents from files, folders or globs. A .jsonl file holds one JSON document per line "
        "({id, text, modified_at?, metadata?}); any other file is one document whose id is its path "
        "relative to --base and whose modified time is the file's mtime."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--collection", required=True)
        parser.add_argument("--base", default=".", help="Folder that ids are relative to (default: current)")
        parser.add_argument("--batch", type=int, default=500, help="Documents per transaction")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **o: Any) -> None:
        try:
            collection = Collection.objects.get(name=o["collection"])
        except Collection.DoesNotExist:
            raise CommandError(f"no collection named {o['collection']!r}; create it with create_collection") from None
        base = Path(o["base"])
        try:
            files = list(sources.expand(o["paths"]))
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from None
        total, rejected = EnqueueResult(), []
        batch: dict[str, IncomingDocument] = {}

        def flush() -> None:
            if batch:
                result = enqueue(collection, list(batch.values()))
                total.created += result.created
                total.updated += result.updated
                total.unchanged += result.unchanged
                batch.clear()

        progress = tqdm(files, unit="file", file=sys.stderr, disable=o["no_progress"] or None)
        for path in progress:
            for item in sources.read(path, base):
                if isinstance(item, sources.Rejected):
                    rejected.append(item)
                    continue
                if item.external_id in batch:
                    flush()  # the later version of a repeated id wins
                batch[item.external_id] = item
                if len(batch) >= o["batch"]:
                    flush()
        flush()
        self.stdout.write(
            f"Enqueued into {collection.name}: {len(total.created)} new, {len(total.updated)} changed, "
            f"{len(total.unchanged)} unchanged (not re-embedded)."
        )
        if rejected:
            for r in rejected[:50]:
                self.stderr.write(f"rejected {r.where}: {r.reason}")
            raise CommandError(
                f"{len(rejected)} document(s) rejected (listed above); the {total.accepted} others were enqueued"
            )
