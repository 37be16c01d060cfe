from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit import trail
from pipeline.access import add_as_user, collection_for
from pipeline.quality import GOLDEN_LINE_BYTES, parse_jsonl, save_golden, unknown_answers, unknown_warning
from pipeline.sources import text_lines


class Command(BaseCommand):
    help = 'Import a collection\'s golden queries from a JSONL file of {"query": ..., "expected": document id}.'

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--collection", required=True)
        add_as_user(parser)
        parser.add_argument("--replace", action="store_true", help="Delete the collection's other golden queries.")
        parser.add_argument("--dry-run", action="store_true", help="Check the file; write nothing.")

    def handle(self, *args: Any, **o: Any) -> None:
        collection = collection_for(o["collection"], o["as_user"])
        try:
            items = parse_jsonl(text_lines(o["file"], GOLDEN_LINE_BYTES))
        except ValidationError as exc:
            raise CommandError(f"{o['file']}: {exc.messages[0]}") from None
        if not items:
            raise CommandError(f"{o['file']} holds no golden queries")
        if o["dry_run"]:
            self.stdout.write(f"{len(items)} golden queries are valid (dry run: nothing written).")
            return
        save_golden(collection, items, replace=o["replace"])
        trail.command(self, collection=collection.name, target=f"{len(items)} golden queries")
        self.stdout.write(f"Imported {len(items)} golden queries into {collection.name}.")
        if unknown := unknown_answers(collection):
            self.stderr.write(unknown_warning(collection, unknown))
