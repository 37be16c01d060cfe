from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit import trail
from embedportal.printable import printable
from pipeline.access import add_as_user, collection_for
from pipeline.performance.optimizer import (
    STAGES,
    Analysis,
    EmbeddingPipelineOperationsOptimizer,
    OptimizerError,
    window_problem,
)
from pipeline.performance.optimizer.changes import evaluate_pending


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


class Command(BaseCommand):
    help = (
        "Where the pipeline's time goes: p50/p95/p99 per stage and collection, the bottleneck, and "
        "recommendations with their expected effect. --apply applies those that change a collection "
        "(batch size; HNSW m and ef_construction, rebuilding its index; ef_search; backfill mode), each "
        "measured, and reverted by the evaluation schedule if it does not help."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--collection", help="Only this collection (default: every collection)")
        add_as_user(parser)
        parser.add_argument(
            "--window", type=int, help="Seconds of history to read (EMBEDPORTAL_OPTIMIZER_WINDOW_SECONDS)"
        )
        parser.add_argument(
            "--apply",
            action="store_true",
            help="Apply the recommendations that change a collection (not deployment settings)",
        )
        parser.add_argument("--evaluate", action="store_true", help="Keep or revert applied changes now")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **o: Any) -> None:
        if o["window"] is not None and (problem := window_problem(o["window"])):
            raise CommandError(f"--window: {problem}")
        if o["as_user"] and not o["collection"]:
            raise CommandError("--as-user needs --collection (one of the user's collections)")
        collection = collection_for(o["collection"], o["as_user"]) if o["collection"] else None
        optimizer = EmbeddingPipelineOperationsOptimizer(o["window"])
        try:
            evaluated = evaluate_pending() if o["evaluate"] else []
            applied = optimizer.apply_all(collection, applied_by="manage.py optimize") if o["apply"] else []
            analysis = optimizer.analyse(collection)
        except OptimizerError as exc:
            raise CommandError(str(exc)) from None
        for c in applied:
            changes = {c.setting: [c.before, c.after]}
            trail.command(self, collection=c.collection.name, target=f"change {c.pk}", changes=changes)
        if o["json"]:
            out = analysis.as_dict()
            if o["apply"]:
                fields = ("setting", "before", "after", "status")
                out["applied"] = [
                    {"id": c.pk, "collection": c.collection.name, **{f: getattr(c, f) for f in fields}} for c in applied
                ]
            if o["evaluate"]:
                out["evaluated"] = [e.as_dict() for e in evaluated]
            self.stdout.write(json.dumps(out, indent=2, default=str))
            return
        self._print(analysis)
        # Collection names, and the texts quoting them, are tenant text: escaped, as check_health and search do
        # (the slug rule is checked where a name comes in; a row written around it would reach the terminal).
        for c in applied:
            name = printable(c.collection.name)
            self.stdout.write(f"applied #{c.pk}: {name}.{c.setting} {c.before} -> {c.after} (measuring)")
        for e in evaluated:
            self.stdout.write(f"change #{e.change} {e.status}: {printable(e.note)}")

    def _print(self, a: Analysis) -> None:
        self.stdout.write(
            f"source: {a.source}, last {a.window_seconds} s, {a.documents} documents, {a.workers} workers"
        )
        self.stdout.write(f"{'stage':<12}{'p50':>10}{'p95':>10}{'p99':>10}{'busy':>8}")
        for stage in STAGES:
            p = a.stages[stage]
            busy = f"{a.utilisation[stage]:.0%}" if stage in a.utilisation else ""
            self.stdout.write(f"{stage:<12}{_seconds(p.p50):>10}{_seconds(p.p95):>10}{_seconds(p.p99):>10}{busy:>8}")
        self.stdout.write(f"bottleneck: {a.bottleneck.get('stage') or 'none'} ({a.bottleneck['reason']})")
        for name, figures in a.collections.items():
            self.stdout.write(
                f"  {printable(name)}: {figures['documents']} documents, p95 total "
                f"{_seconds(figures['stages']['total']['p95'])} s, cost ${figures['cost_usd']:.6f}"
            )
        for rec in a.recommendations:
            mark = " [--apply]" if rec.appliable else ""
            title, effect, reason = (printable(t) for t in (rec.title, rec.expected_effect, rec.reason))
            self.stdout.write(f"- {title}{mark}\n    expected: {effect}\n    why: {reason}")
        if not a.recommendations:
            self.stdout.write("no recommendations")
