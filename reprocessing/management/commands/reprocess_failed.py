from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from embedportal.shutdown import stop_on_signals
from reprocessing.workflow import ReprocessingWorkflow, WorkflowReport


class Command(BaseCommand):
    help = "Run the ReprocessingWorkflow: requeue failed documents whose backoff (5 min, 30 min, 2 h, 24 h) is due."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Run one pass and exit (Argo CronWorkflow, tests)")
        parser.add_argument("--dry-run", action="store_true", help="Count what is due; change nothing")
        parser.add_argument("--json", action="store_true", help="Print each pass's report as JSON")

    def handle(self, *args: Any, **o: Any) -> None:
        workflow = ReprocessingWorkflow()
        if o["once"] or o["dry_run"]:
            self._print(workflow.run_once(dry_run=o["dry_run"]), o["json"])
            return
        stop = stop_on_signals()
        self.stdout.write("Reprocessing every minute; Ctrl-C to stop.")
        while not stop.is_set():
            self._print(workflow.run_once(), o["json"])
            stop.wait(workflow.interval)

    def _print(self, report: WorkflowReport, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(report.as_dict()))
        elif report.dry_run:
            self.stdout.write(f"{report.due} failed document(s) due for a retry (dry run: nothing requeued).")
        else:
            by_type = ", ".join(f"{k} {v}" for k, v in sorted(report.retried.items())) or "none"
            self.stdout.write(
                f"Requeued {sum(report.retried.values())} failed document(s) ({by_type}); "
                f"{report.reconciled} resolved as already embedded."
            )
