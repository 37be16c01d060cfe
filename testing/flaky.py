"""Flaky scenarios, from the results table (notes: docs/ops-tests.md, "Module notes")."""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from testing.choices import Outcome
from testing.models import GOOD, ScenarioVersion, TestResult

WINDOW = timedelta(days=14)


@dataclass
class FlakyScenario:
    scenario: str
    category: str
    runs: int
    passes: int
    failures: int
    passed_on_retry: int
    flip_rate: float
    reasons: list[str] = field(default_factory=list)
    last_seen: datetime | None = None


def flaky_names(since: datetime) -> set[str]:
    """Scenarios that passed on a retry, or passed and failed on one version, since then (tens of summary rows)."""
    flaky = Q(flaky_at__gte=since) | Q(good_at__gte=since, bad_at__gte=since)
    return set(ScenarioVersion.objects.filter(flaky).values_list("scenario", flat=True))


def flaky_scenarios() -> list[FlakyScenario]:
    """The flaky scenarios with their history's figures (only their results are read)."""
    since = timezone.now() - WINDOW
    rows = (
        TestResult.objects.filter(started_at__gte=since, scenario__in=flaky_names(since))
        .exclude(outcome=Outcome.SKIPPED)
        .order_by("scenario", "started_at", "id")
        .values_list(
            "scenario", "category", "outcome", "started_at", "run__code_version", "run__config_fingerprint", "target"
        )
    )
    found = []
    for scenario, group in itertools.groupby(rows, key=lambda row: row[0]):
        results = list(group)
        outcomes = [r[2] for r in results]
        retried = outcomes.count(Outcome.FLAKY)
        by_version: dict[tuple, set[str]] = defaultdict(set)
        for _, _, outcome, _, code, config, target in results:
            by_version[(code, config, target)].add("good" if outcome in GOOD else "bad")
        mixed = [key for key, seen in by_version.items() if seen == {"good", "bad"}]
        if not (retried or mixed):
            continue
        reasons = [f"passed only after a retry in {retried} run(s)"] if retried else []
        if mixed:
            reasons.append(f"passed and failed on the same code and configuration ({len(mixed)} version(s))")
        good = [o in GOOD for o in outcomes]
        runs, passes = len(outcomes), sum(good)
        flip_rate = sum(a != b for a, b in itertools.pairwise(good)) / (runs - 1) if runs > 1 else 0.0
        row = (scenario, results[0][1], runs, passes, runs - passes, retried, flip_rate, reasons, results[-1][3])
        found.append(FlakyScenario(*row))
    return sorted(found, key=lambda f: (-f.flip_rate, -f.passed_on_retry, f.scenario))
