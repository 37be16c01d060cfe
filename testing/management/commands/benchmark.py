"""Run the standard benchmark suite (ingest steady and backfill, MiniLM, re-run, search, /metrics), each
repeated; store it as a BenchmarkRun and compare every figure with this machine's history (Welch t-test and a
5% minimum effect; change points date a regression). Exits 3 on a regression."""

from __future__ import annotations

import json
import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from embedportal.scratch import ScratchUnavailable
from embedportal.shutdown import die_with_parent
from testing.api.serializers import BenchmarkRunSerializer
from testing.benchmarks import stages
from testing.benchmarks import suite as benchmarks
from testing.benchmarks.regression import regressions
from testing.choices import BenchmarkSuite, BenchmarkTrigger
from testing.models import BenchmarkRun

# Exit status when a figure regressed (1 is any other error).
REGRESSION_EXIT = 3


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--suite", choices=[BenchmarkSuite.QUICK, BenchmarkSuite.FULL], default=BenchmarkSuite.QUICK
        )
        parser.add_argument("--only", help=f"Comma list of benchmarks: {', '.join([*benchmarks.BENCHMARKS, 'rerun'])}")
        parser.add_argument("--corpus", default="django-docs", help="django-docs, or a folder of text files")
        parser.add_argument(
            "--collection",
            action="append",
            help="Instead of the suite: this collection's own workload (its fields, its newest documents' text), "
            "benchmark collection:<name> of suite `workload`; repeatable",
        )
        # Checked in handle(), not by argparse: workflows pass it as a template ({{workflow.parameters.trigger}}).
        parser.add_argument("--trigger", default=BenchmarkTrigger.CLI, help=", ".join(BenchmarkTrigger.values))
        parser.add_argument("--note", default="", help="Stored with the run (what asked for it)")
        parser.add_argument("--no-fail", action="store_true", help="Exit 0 even when a figure regressed")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **o: Any) -> None:
        if parent := os.environ.get("EMBEDPORTAL_PARENT_PID"):  # started by a worker's task
            die_with_parent(int(parent))
        if o["trigger"] not in BenchmarkTrigger.values:
            raise CommandError(f"--trigger must be one of {', '.join(BenchmarkTrigger.values)}")
        only = [name.strip() for name in o["only"].split(",")] if o["only"] else None
        if unknown := sorted(set(only or []) - {*benchmarks.BENCHMARKS, "rerun"}):
            raise CommandError(
                f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(benchmarks.BENCHMARKS)}, rerun"
            )
        progress = (lambda m: None) if o["json"] else self.stderr.write
        try:
            run = benchmarks.run_suite(
                o["suite"], o["trigger"], o["note"], only, progress, o["corpus"], o["collection"]
            )
        except (ScratchUnavailable, RuntimeError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        if o["json"]:
            # The API's representation of the run (GET /api/v1/embedding-pipeline-operations/benchmarks/<id>).
            self.stdout.write(json.dumps(BenchmarkRunSerializer(run).data, indent=2))
        else:
            self.stdout.write(report(run))
        if run.regressions and not o["no_fail"]:
            found = ", ".join(f"{b}.{f}" for b, f in regressions(run.comparison))
            raise CommandError(f"{run.regressions} figure(s) regressed: {found}", returncode=REGRESSION_EXIT)


def report(run: BenchmarkRun) -> str:
    lines = [
        f"{run.suite} suite, {run.duration_seconds:.0f} s, code {run.code_version[:12]}, machine "
        f"{run.machine_fingerprint} ({run.machine.get('cpu')}, {run.machine.get('cores')} cores)",
        f"{'benchmark':<16} {'figure':<22} {'median':>10} {'samples (spread)':>18} "
        f"{'baseline':>10} {'change':>8}  verdict",
    ]
    for benchmark, figures in run.results.items():
        informational = {name: data for name, data in figures.items() if stages.is_informational(data)}
        for name, data in figures.items():
            if name in informational:
                continue
            verdict = run.comparison.get(benchmark, {}).get(name, {})
            spread = max(data["samples"]) - min(data["samples"])
            base, change = verdict.get("baseline_median"), verdict.get("change")
            mark = verdict.get("verdict", "?")
            if verdict.get("change_points"):
                last = verdict["change_points"][-1]
                mark += f" (step {last['change']:+.0%} since {last['at'][:16]}, {last['code_version'][:10]})"
            lines.append(
                f"{benchmark:<16} {name:<22} {data['median']:>10.4g} {len(data['samples']):>3} (±{spread / 2:<9.3g}) "
                f"{'' if base is None else f'{base:.4g}':>10} {'' if change is None else f'{change:+.1%}':>8}  {mark}"
            )
        if informational:
            # One line for the 15 per-stage figures: not gated, charted on the Trends page.
            p95 = [
                f"{stage} {informational[key]['median']:.3g}"
                for stage in stages.STAGES
                if (key := stages.name(stage, "p95")) in informational
            ]
            lines.append(
                f"{benchmark:<16} {'per-stage p95 (s)':<22} {', '.join(p95)}  (informational; p50/p99 with --json "
                "and on the Trends page)"
            )
    return "\n".join(lines)
