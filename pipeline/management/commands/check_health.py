from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pipeline import health


class Command(BaseCommand):
    help = "Run the pipeline health checks (model, pgvector, queue); exit 1 if any fails."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--check", action="append", choices=sorted(health.CHECKS), help="Run only this check (repeatable)"
        )
        parser.add_argument("--json", action="store_true", help="Print the results as JSON")

    def handle(self, *args: Any, **o: Any) -> None:
        results = health.run_checks(o["check"])
        body = health.report(results)
        if o["json"]:
            self.stdout.write(json.dumps(body, indent=2))
        else:
            for r in results:
                mark = self.style.SUCCESS("PASS") if r.ok else self.style.ERROR("FAIL")
                self.stdout.write(f"{mark} {r.name:<9} {r.seconds * 1000:7.1f} ms  {r.reason}")
        if not body["healthy"]:
            failed = ", ".join(r.name for r in results if not r.ok)
            # CommandError exits 1 and says which checks failed on stderr.
            raise CommandError(f"unhealthy: {failed}")
