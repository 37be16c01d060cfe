"""Execute queued operations test runs (API, admin, schedules, configuration changes) in this process,
never in a pipeline worker's slot. Runs until SIGTERM/SIGINT, which interrupts the run in progress
(recorded as interrupted) and exits within seconds; --once executes what is queued now and exits."""

from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from embedportal.printable import printable
from testing.models import TestRun
from testing.runner import TestRunner


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Execute the runs queued now, then exit")
        parser.add_argument("--poll", type=float, default=1.0, help="Seconds between looks at the queue (default 1)")

    def handle(self, *args: Any, **o: Any) -> None:
        if o["poll"] <= 0:
            raise CommandError("--poll must be a positive number of seconds")
        runner = TestRunner(poll_seconds=o["poll"], report=self._report)
        previous = {signum: signal.signal(signum, runner.stop) for signum in (signal.SIGTERM, signal.SIGINT)}
        self.stdout.write(f"test runner {runner.name} waiting for queued runs")
        try:
            done = runner.serve(once=o["once"])
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self.stdout.write(f"test runner {runner.name} stopped after {done} run(s)")

    def _report(self, run: TestRun) -> None:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(run.counts.items()))
        # The message quotes tenant text (a model string, a collection name, a provider's error): escaped.
        message = printable(run.message)
        self.stdout.write(f"Run {run.pk}: {run.status} in {run.duration_seconds or 0:.1f} s {counts} {message}")
