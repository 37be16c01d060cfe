"""Find documents whose source changed after their last embedding, past their collection's freshness SLA, and
requeue them (reason: stale)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit import trail
from reprocessing.staleness import detect_stale


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count stale documents; requeue nothing")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON")

    def handle(self, *args: Any, **o: Any) -> None:
        report = detect_stale(dry_run=o["dry_run"])
        if not report.dry_run:
            trail.command(self, documents=report.requeued)
        if o["json"]:
            self.stdout.write(json.dumps(report.as_dict()))
            return
        for name, n in sorted(report.stale.items()):
            if n:
                self.stdout.write(f"{name}: {n} stale")
        verb = "would requeue" if report.dry_run else "requeued"
        self.stdout.write(f"{report.total} stale document(s); {verb} {report.requeued}.")
