from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from tqdm import tqdm

from audit import trail
from pipeline import sources
from pipeline.access import add_as_user, collection_for
from pipeline.queue import EnqueueResult, IncomingDocument, delete_missing, enqueue


class Command(BaseCommand):
    help = (
        "Enqueue documents from files, folders or globs. A .jsonl file holds one JSON document per line "
        "({id, text, modified_at?, metadata?}); any other file is one document whose id is its path "
        "relative to --base and whose modified time is the file's mtime. A file named one by one is read, "
        "hidden or not; globs and folder walks skip hidden entries and special files, and count them. The "
        "portal's data directory and secret files are never read."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--collection", required=True)
        add_as_user(parser)
        parser.add_argument("--base", default=".", help="Folder that ids are relative to (default: current)")
        parser.add_argument("--batch", type=int, default=500, help="Documents per transaction")
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument(
            "--delete-missing",
            action="store_true",
            help="The paths are the collection's whole source: then delete its documents they no longer hold "
            "(not those another producer enqueued meanwhile). Nothing is deleted while any document is rejected.",
        )

    def handle(self, *args: Any, **o: Any) -> None:
        collection = collection_for(o["collection"], o["as_user"], "; create it with create_collection")
        started = timezone.now()
        base = Path(o["base"])
        skipped: Counter[str] = Counter()
        try:
            files = list(sources.expand(o["paths"], skipped))
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from None
        total, rejected, shown = EnqueueResult(), 0, 50
        batch: dict[str, IncomingDocument] = {}
        batch_chars = 0

        def flush() -> None:
            nonlocal batch_chars
            if batch:
                total.add(enqueue(collection, list(batch.values()), source="cli"))
                batch.clear()
                batch_chars = 0

        progress = tqdm(files, unit="file", file=sys.stderr, disable=o["no_progress"] or None)
        for path in progress:
            for item in sources.read(path, base, collection.contextual_chunks):
                if isinstance(item, sources.Rejected):
                    # Reported as found, not collected: a file of a million bad lines stays flat.
                    rejected += 1
                    if rejected <= shown:
                        self.stderr.write(f"rejected {item.where}: {item.reason}")
                    continue
                if item.external_id in batch:
                    flush()  # the later version of a repeated id wins
                batch[item.external_id] = item
                batch_chars += len(item.text)
                # A batch is one transaction held in memory: bounded in characters as well as documents,
                # like an API request (EMBEDPORTAL_MAX_REQUEST_BYTES).
                if len(batch) >= o["batch"] or batch_chars >= settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
                    flush()
        flush()
        deleted = []
        if o["delete_missing"] and not rejected:
            held = collection.documents.count() if not total.ids() else 0
            if held:
                # An empty or unmounted folder is far likelier than a source whose every document went.
                raise CommandError(
                    f"the paths hold no documents: --delete-missing would delete all {held} of {collection.name}; "
                    "check the paths, or delete the documents through the API or the admin if that is meant"
                )
            deleted = delete_missing(collection, total.ids(), started)
        trail.command(self, collection=collection.name, documents=total.accepted + len(deleted))
        self.stdout.write(
            f"Enqueued into {collection.name}: {len(total.created)} new, {len(total.updated)} changed, "
            f"{len(total.unchanged)} unchanged (not re-embedded)"
            + (f", {len(total.stale)} stale (older than the stored version, not applied)." if total.stale else ".")
        )
        if deleted:
            listed = ", ".join(deleted[:10]) + (f" and {len(deleted) - 10} more" if len(deleted) > 10 else "")
            self.stdout.write(f"Deleted {len(deleted)} document(s) the source no longer holds: {listed}.")
        if skipped:
            self.stdout.write(sources.describe_skips(skipped))
        if rejected:
            more = f"; the first {shown} are listed above" if rejected > shown else " (listed above)"
            kept = "; nothing was deleted (--delete-missing) while any is rejected" if o["delete_missing"] else ""
            raise CommandError(
                f"{rejected} document(s) rejected{more}; the {total.accepted} others were enqueued{kept}"
            )
