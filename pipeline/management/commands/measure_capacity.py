from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from embedportal.scratch import ScratchUnavailable
from pipeline import loadharness, providers
from pipeline.performance import capacity

MAX_WORKERS = 32


def worker_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise CommandError(f"--workers {text!r}: give worker counts as a comma list such as 1,2,4") from None
    if any(n < 1 or n > MAX_WORKERS for n in counts):
        raise CommandError(f"--workers {text!r}: each count must be between 1 and {MAX_WORKERS}")
    if len(set(counts)) != len(counts):
        raise CommandError(f"--workers {text!r}: each count once")
    return sorted(counts)


class Command(BaseCommand):
    help = (
        "Measure the sustained docs/s of 1..N worker processes of one pod on the scratch database "
        "(embedportal.scratch; production keeps running and sees none of it), fit the Universal Scalability Law, "
        "store a CapacityMeasurement (the capacity gauge and the plan read it: the rate at "
        "EMBEDPORTAL_CAPACITY_WORKERS per pod times "
        "EMBEDPORTAL_MAX_WORKER_REPLICAS)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", default=settings.EMBEDPORTAL_DEFAULT_MODEL, help="LiteLLM model string")
        per_pod = ",".join(str(n) for n in sorted({1, 2, settings.EMBEDPORTAL_CAPACITY_WORKERS}))
        parser.add_argument("--workers", default=per_pod, help=f"Worker counts, a comma list (default {per_pod})")
        parser.add_argument("--docs", type=int, default=300, help="Documents per worker count (default 300)")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args: Any, **o: Any) -> None:
        counts = worker_counts(o["workers"])
        if o["docs"] < 10:
            raise CommandError("--docs must be at least 10: fewer make no sustained rate")
        try:
            providers.known_dimensions(o["model"])
        except providers.UnknownLocalModel as exc:
            raise CommandError(str(exc)) from None

        def progress(point: loadharness.Point) -> None:
            if not o["json"]:
                self.stdout.write(
                    f"workers {point.workers}: {point.docs_per_second:.2f} docs/s sustained "
                    f"({point.documents} docs, {point.chunks} chunks; rate over {point.seconds:.1f} s)"
                )

        try:
            m = capacity.measure(o["model"], counts, o["docs"], progress)
        except (loadharness.CapacityError, ScratchUnavailable) as exc:
            raise CommandError(str(exc)) from None
        fit = capacity.fit_of(m)
        if o["json"]:
            self.stdout.write(json.dumps({"id": m.pk, **capacity.measurement_dict(m)}, indent=2))
            return
        on = f" on {m.local_encoder}" if m.local_encoder else ""
        self.stdout.write(f"model {m.model}{on}, {m.documents} documents of {m.chars_per_document} characters per run")
        if fit.lam is not None:
            params = f"lambda {fit.lam:.3f} docs/s"
            if fit.sigma is not None:
                params += f", sigma {fit.sigma:.4f}, kappa {fit.kappa:.5f}"
            if fit.peak_workers is not None:
                params += f", N* {fit.peak_workers:.1f} workers"
            self.stdout.write(f"USL: {params}")
        self.stdout.write(f"fit: {m.fit_note}")
        self.stdout.write(self.style.SUCCESS(f"stored capacity measurement {m.pk}"))
