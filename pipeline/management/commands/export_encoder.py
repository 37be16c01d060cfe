"""Export the local model to OpenVINO at a precision (once; EMBEDPORTAL_ENCODER_DIR keeps it) and print its
faithfulness gate: cosine to the PyTorch reference on the probe set, retrieval on the development
golden set, and whether processes will serve it (else they fall back to PyTorch). With --collection, the
collection's golden-query gate instead (pipeline.quality.runtime_gate: a worker runs it on a change of runtime)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pipeline import encoder, quality
from pipeline.models import Collection


class Command(BaseCommand):
    help = __doc__
    requires_system_checks: list[str] = []  # no database: the image runs it at build time

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--precision",
            choices=["auto", *encoder.PRECISIONS],
            default="auto",
            help="auto: the precisions EMBEDPORTAL_LOCAL_PRECISION allows (with auto, those this CPU's flags "
            "favour), fastest first, up to the first that passes the gate",
        )
        parser.add_argument(
            "--collection", help="Print this collection's golden-query gate of the export at --precision (JSON)"
        )
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **o: Any) -> None:
        if o["collection"]:
            return self.gate_collection(o["collection"], o["precision"])
        reports = []
        for precision in encoder.candidate_precisions() if o["precision"] == "auto" else [o["precision"]]:
            path = encoder.export(precision)
            reports.append({"precision": precision, "path": str(path), **encoder.gate_report(path)})
            if reports[-1]["passed"]:
                break
        if o["json"]:
            self.stdout.write(json.dumps(reports if o["precision"] == "auto" else reports[0], indent=2))
            return
        for report in reports:
            self.report(report)

    def gate_collection(self, name: str, precision: str) -> None:
        collection = Collection.objects.filter(name=name).first()
        if collection is None or not collection.golden_queries.exists() or precision == "auto":
            raise CommandError(
                f"--collection needs a collection with golden queries ({name!r} is none) and a --precision"
            )
        candidate = encoder.OpenVinoEncoder(encoder.export(precision), precision)
        self.stdout.write(json.dumps(quality.runtime_gate(collection, candidate, encoder.reference()), indent=2))

    def report(self, report: dict[str, Any]) -> None:
        ours, theirs = report["retrieval"], report["reference_retrieval"]
        verdict = "passed" if report["passed"] else f"FAILED ({'; '.join(report['problems'])})"
        self.stdout.write(
            f"OpenVINO {report['precision']} export in {report['path']} (made in {report['export_seconds']:.1f}s)\n"
            f"cosine to PyTorch on {report['probes']} probes: mean {report['mean_cosine']:.5f}, "
            f"min {report['min_cosine']:.5f} (gate: {encoder.MIN_MEAN_COSINE} / {encoder.MIN_COSINE})\n"
            f"development golden set, top {encoder.TOP_K}: {ours['hits']}/{ours['queries']} (MRR {ours['mrr']:.3f}); "
            f"PyTorch {theirs['hits']}/{theirs['queries']} (MRR {theirs['mrr']:.3f})\n"
            f"faithfulness gate: {verdict}"
        )
