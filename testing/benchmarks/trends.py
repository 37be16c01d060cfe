"""Benchmark history as trend series for the admin's Trends page (docs/benchmarks.md, "Regressions")."""

from __future__ import annotations

from typing import Any

from django.db.models import Max

from testing.benchmarks import regression, stages
from testing.models import BenchmarkRun


def trends(machine_fingerprint: str, suite: str) -> dict[str, Any]:
    """Series sharing one axis of runs, oldest first; a run without a figure has None there."""
    runs = regression.history(machine_fingerprint, suite)
    gated, per_stage = set(), set()
    for r in runs:
        for b, figures in r.results.items():
            for f, data in figures.items():
                if stages.is_informational(data):
                    per_stage.add((b, data["stage"]))
                else:
                    gated.add((b, f))
    order = {stage: i for i, stage in enumerate(stages.STAGES)}
    return {
        "machine": machine_fingerprint,
        "suite": suite,
        "runs": [
            {"id": r.pk, "at": r.started_at.isoformat(), "code_version": r.code_version[:12], "trigger": r.trigger}
            for r in runs
        ],
        "charts": [_chart(runs, benchmark, figure) for benchmark, figure in sorted(gated)],
        "stage_charts": [
            _stage_chart(runs, benchmark, stage)
            for benchmark, stage in sorted(per_stage, key=lambda p: (p[0], order.get(p[1], len(order)), p[1]))
        ],
    }


def _chart(runs: list[BenchmarkRun], benchmark: str, figure: str) -> dict[str, Any]:
    data = [r.results.get(benchmark, {}).get(figure) for r in runs]
    known = next(d for d in data if d is not None)
    verdicts = [r.comparison.get(benchmark, {}).get(figure, {}).get("verdict") for r in runs]
    index = {r.started_at.isoformat(): i for i, r in enumerate(runs)}
    series = [(r.started_at, r.code_version, d["median"]) for r, d in zip(runs, data, strict=True) if d]
    steps = [
        {"run": index[p["at"]], "at": p["at"], "code_version": p["code_version"][:12], "change": p["change"]}
        for p in regression.change_points(series, known["better"])
    ]
    return {
        "benchmark": benchmark,
        "figure": figure,
        "unit": known.get("unit", ""),
        "better": known["better"],
        "median": [None if d is None else d["median"] for d in data],
        "low": [None if d is None else min(d["samples"]) for d in data],
        "high": [None if d is None else max(d["samples"]) for d in data],
        "regressions": [i for i, v in enumerate(verdicts) if v == "regression"],
        "change_points": steps,
    }


def _stage_chart(runs: list[BenchmarkRun], benchmark: str, stage: str) -> dict[str, Any]:
    """The medians of one stage's informational p50/p95/p99 over the runs (None where a run has none)."""
    series = {}
    for q in stages.QUANTILES:
        data = [r.results.get(benchmark, {}).get(stages.name(stage, q)) for r in runs]
        series[q] = [None if d is None else d["median"] for d in data]
    return {"benchmark": benchmark, "stage": stage, **series}


def machines() -> list[str]:
    """Machine fingerprints with stored runs, most recently used first."""
    used = BenchmarkRun.objects.values("machine_fingerprint").annotate(last=Max("started_at")).order_by("-last")
    return [row["machine_fingerprint"] for row in used]
