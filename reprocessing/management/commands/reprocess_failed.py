from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit import trail
from reprocessing.workflow import ReprocessingWorkflow


class Command(BaseCommand):
    help = "One ReprocessingWorkflow pass: requeue failed documents whose backoff (5 min, 30 min, 2 h, 24 h) is due."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Accepted for compatibility: every run is one pass")
        parser.add_argument("--dry-run", action="store_true", help="Count what is due; change nothing")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON")

    def handle(self, *args: Any, **o: Any) -> None:
        report = ReprocessingWorkflow().run_once(dry_run=o["dry_run"])
        if not report.dry_run:
            trail.command(self, documents=sum(report.retried.values()))
        if o["json"]:
            self.stdout.write(json.dumps(report.as_dict()))
        elif report.dry_run:
            self.stdout.write(f"{report.due} failed document(s) due for a retry (dry run: nothing requeued).")
        else:
            by_type = ", ".join(f"{k} {v}" for k, v in sorted(report.retried.items())) or "none"
            self.stdout.write(f"Requeued {sum(report.retried.values())} failed document(s) ({by_type}).")
