"""Regression detection for benchmark runs: a gate per run and change points over each figure's
history of medians (docs/benchmarks.md, "Regressions"); informational figures are not gated."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from scipy import stats

from testing.benchmarks import stages
from testing.models import BenchmarkRun

BASELINE_RUNS = 10
HISTORY_RUNS = 64
MIN_BASELINE_SAMPLES = 5
MIN_EFFECT = 0.05
P_VALUE = 0.01


def history(machine_fingerprint: str, suite: str, before: Any = None) -> list[BenchmarkRun]:
    """Earlier runs of `suite` on this machine, oldest first."""
    runs = BenchmarkRun.objects.filter(machine_fingerprint=machine_fingerprint, suite=suite)
    if before is not None:
        runs = runs.filter(started_at__lt=before)
    return list(reversed(runs.order_by("-started_at")[:HISTORY_RUNS]))


def gate(candidate: Sequence[float], baseline: Sequence[float], better: str) -> dict[str, Any]:
    """The verdict on one figure's samples against the baseline samples: Bencher's t-test threshold
    and MIN_EFFECT (docs/benchmarks.md, "Regressions")."""
    out: dict[str, Any] = {"baseline_samples": len(baseline)}
    if len(baseline) < MIN_BASELINE_SAMPLES or not candidate:
        return {**out, "verdict": "insufficient_data"}
    sign = 1 if better == "higher" else -1  # sign * x grows as x gets better
    before, now = statistics.median(baseline), statistics.median(candidate)
    mean, sd = statistics.fmean(baseline), statistics.stdev(baseline)
    # A constant baseline (sd 0) still needs a margin: the minimum effect provides it below.
    upper = float(stats.t.ppf(1 - P_VALUE, len(baseline) - 1, loc=mean, scale=sd)) if sd else mean
    lower = float(stats.t.ppf(P_VALUE, len(baseline) - 1, loc=mean, scale=sd)) if sd else mean
    change = (now - before) / before if before else 0.0
    worse_limit, better_limit = (lower, upper) if sign > 0 else (upper, lower)
    out.update(
        baseline_median=round(before, 6), median=round(now, 6), change=round(change, 4), limit=round(worse_limit, 6)
    )
    if len(candidate) >= 2:
        t_test = stats.ttest_ind(candidate, baseline, equal_var=False, alternative="less" if sign > 0 else "greater")
        out["p_value"] = _p(t_test.pvalue)
        out["mann_whitney_p"] = _p(stats.mannwhitneyu(candidate, baseline, alternative="two-sided").pvalue)
    if abs(change) < MIN_EFFECT:
        out["verdict"] = "same"
    elif sign * change < 0:
        out["verdict"] = "regression" if sign * now < sign * worse_limit else "same"
    else:
        out["verdict"] = "improvement" if sign * now > sign * better_limit else "same"
    return out


def _p(value: float) -> float:
    # Identical constant samples give nan: no evidence either way.
    return 1.0 if value is None or math.isnan(value) else round(float(value), 6)


def change_points(series: Sequence[tuple[Any, str, float]], better: str) -> list[dict[str, Any]]:
    """Steps to a worse level in a series of (when, code version, median), oldest first: each
    dated by the first run of the worse level."""
    from asv.step_detect import detect_regressions, detect_steps

    values = [v for _, _, v in series]
    if len(values) < 3 or any(v is None or v <= 0 for v in values):
        return []
    y = [1.0 / v for v in values] if better == "higher" else list(values)  # asv: lower is better
    _, _, positions = detect_regressions(detect_steps(y), threshold=MIN_EFFECT)
    found = []
    for before, after, _, _ in positions or []:
        if after is None or after >= len(series):
            continue
        when, version, value = series[after]
        at = when.isoformat() if hasattr(when, "isoformat") else str(when)
        change = round((value - values[before]) / values[before], 4)
        found.append({"at": at, "code_version": version, "before": values[before], "after": value, "change": change})
    return found


def compare(run: BenchmarkRun, earlier: list[BenchmarkRun]) -> dict[str, dict[str, dict[str, Any]]]:
    """Every figure of `run` against `earlier` (same machine and suite, oldest first)."""
    comparison: dict[str, dict[str, dict[str, Any]]] = {}
    for benchmark, figures in run.results.items():
        for figure, data in figures.items():
            if stages.is_informational(data):
                # Not gated: a single drain's per-stage tail moves with the machine's load (stages).
                comparison.setdefault(benchmark, {})[figure] = {"verdict": "informational"}
                continue
            better = data["better"]
            having = [r for r in earlier if figure in r.results.get(benchmark, {})]
            series = [(r.started_at, r.code_version, r.results[benchmark][figure]["median"]) for r in having]
            steps = change_points([*series, (run.started_at, run.code_version, data["median"])], better)
            # The baseline is the current level: runs since the last step already in the history, when
            # there are enough of them (a step dated earlier is reported, not failed again and again).
            last_step = steps[-1]["at"] if steps else None
            since = next((i for i, (when, _, _) in enumerate(series) if when.isoformat() == last_step), 0)
            recent = having[since:][-BASELINE_RUNS:]
            if sum(len(r.results[benchmark][figure]["samples"]) for r in recent) < MIN_BASELINE_SAMPLES:
                recent = having[-BASELINE_RUNS:]
            baseline = [s for r in recent for s in r.results[benchmark][figure]["samples"]]
            verdict = gate(data["samples"], baseline, better)
            verdict["change_points"] = steps
            comparison.setdefault(benchmark, {})[figure] = verdict
    return comparison


def regressions(comparison: dict[str, dict[str, dict[str, Any]]]) -> list[tuple[str, str]]:
    return [(b, f) for b, figures in comparison.items() for f, v in figures.items() if v["verdict"] == "regression"]
