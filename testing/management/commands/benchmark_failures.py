"""Failure-handling benchmark: documents through a chaos provider failing a share of calls, the pipeline and the
ReprocessingWorkflow on a simulated clock; checks none is lost or doubled. Runs on the configured database in
its own collection (deleted afterwards unless --keep)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from testing.benchmarks import failures as benchmark


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--documents", type=int, default=1000)
        parser.add_argument("--failure-rate", type=float, default=0.2, help="Share of provider calls that fail")
        parser.add_argument("--poison", type=int, default=10, help="Documents the provider always rejects")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--keep", action="store_true", help="Keep the benchmark collection")

    def handle(self, *args: Any, **o: Any) -> None:
        if o["documents"] < 1:
            raise CommandError(f"--documents must be at least 1 (got {o['documents']})")
        if not 0 <= o["poison"] <= o["documents"]:
            raise CommandError(f"--poison must be between 0 and --documents {o['documents']} (got {o['poison']})")
        if not 0 <= o["failure_rate"] < 1:
            raise CommandError(f"--failure-rate must be in [0, 1) (got {o['failure_rate']})")
        try:
            r = benchmark.run(o["documents"], o["failure_rate"], o["poison"], o["seed"], o["keep"], self.stdout.write)
        except benchmark.WorkersRunning as exc:
            raise CommandError(str(exc)) from None
        first = r.first_pass
        calls = sum(r.calls.values())
        faults = {k: v for k, v in sorted(r.calls.items()) if k != "ok"}
        self.stdout.write(
            f"\n{r.documents} documents ({r.poison} poison), {calls} provider calls, faults injected: {faults}\n"
            f"First pass: {first.embedded} embedded, {first.failed} failed in {r.first_pass_seconds:.1f} s "
            f"({first.claimed / r.first_pass_seconds:.0f} docs/s claimed); errors {dict(first.errors)}\n"
            f"Reprocessing: {r.rounds} workflow rounds, {r.reprocessed} documents requeued, "
            f"{r.reprocess_pass.embedded} embedded, in {r.reprocess_seconds:.2f} s "
            f"({r.reprocess_docs_per_second:.0f} requeued docs/s)\n"
            f"Final: {r.final}"
        )
        if r.problems:
            raise CommandError("checks failed:\n" + "\n".join(r.problems[:50]))
        self.stdout.write(
            self.style.SUCCESS(
                "Checks passed: every document embedded or dead-lettered, none lost, "
                "chunk counts exact, no duplicate (document, ordinal)."
            )
        )
