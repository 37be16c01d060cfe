"""Run the operations test scenarios against this deployment (its database and running workers). Exits non-zero
when a scenario fails or errors, or when another run is in progress."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit import trail
from embedportal.printable import printable
from pipeline.access import add_as_user, collection_for
from testing.api.serializers import TestRunDetailSerializer
from testing.choices import Category, Outcome, RunStatus, Trigger
from testing.junit import run_to_junit
from testing.models import RunInProgress, TestResult
from testing.registry import REGISTRY, UnknownSelection
from testing.tester import EmbeddingPipelineOperationsTester


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--category", action="append", default=[], choices=Category.values)
        parser.add_argument("--scenario", action="append", default=[], help="A scenario name (repeatable)")
        parser.add_argument("--quick", action="store_true", help="Only the quick suite (the hourly schedule)")
        parser.add_argument(
            "--collection", action="append", default=[], help="Target collection of regression/integration scenarios"
        )
        add_as_user(parser)
        parser.add_argument("--trigger", choices=Trigger.values, default=Trigger.CLI)
        parser.add_argument("--json", action="store_true", help="Print the run and its results as JSON")
        parser.add_argument("--junit-xml", metavar="PATH", help="Write the results as JUnit XML")
        parser.add_argument("--list", action="store_true", help="List the scenarios and exit")

    def handle(self, *args: Any, **o: Any) -> None:
        if o["list"]:
            for s in REGISTRY.values():
                quick = " (quick)" if s.quick else ""
                self.stdout.write(f"{s.category:12} {s.name:50} {s.component:10}{quick}  {s.description}")
            return
        for name in o["collection"]:
            collection_for(name, o["as_user"])
        try:
            tester = EmbeddingPipelineOperationsTester(
                categories=o["category"],
                scenarios=o["scenario"],
                quick=o["quick"],
                collections=o["collection"],
                trigger=o["trigger"],
                progress=None if o["json"] else self._progress,
            )
        except UnknownSelection as exc:
            raise CommandError(str(exc)) from None
        try:
            run = tester.run()
        except RunInProgress as exc:
            raise CommandError(f"{exc}; try again when it has finished") from None
        only = o["collection"][0] if len(o["collection"]) == 1 else ""
        trail.command(self, collection=only, target=f"test run {run.pk}")
        if o["junit_xml"]:
            run_to_junit(run).write(o["junit_xml"], pretty=True)
        if o["json"]:
            self.stdout.write(json.dumps(TestRunDetailSerializer(run).data, indent=2, default=str))
        else:
            counts = ", ".join(f"{n} {k}" for k, n in sorted(run.counts.items()))
            self.stdout.write(f"Run {run.pk}: {run.status} in {run.duration_seconds or 0:.1f} s {counts}")
        if run.status != RunStatus.PASSED:
            bad = sum(run.counts.get(k, 0) for k in (Outcome.FAILED, Outcome.ERROR))
            raise CommandError(f"run {run.pk} {run.status}: {bad} scenario(s) failed or errored")

    def _progress(self, result: TestResult) -> None:
        styles = {Outcome.PASSED: self.style.SUCCESS, Outcome.SKIPPED: self.style.WARNING}
        style = styles.get(result.outcome, self.style.ERROR)
        target = f"[{result.target}]" if result.target else ""
        self.stdout.write(
            style(f"{result.outcome.upper():8} {result.scenario}{target} ({result.duration_seconds:.1f} s)")
        )
        if result.message and result.outcome != Outcome.PASSED:
            self.stdout.write(f"         {printable(result.message.splitlines()[0][:300])}")
