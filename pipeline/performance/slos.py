"""The pipeline's SLOs from the one spec, slos.yaml (which also generates the Prometheus rules): the
three event SLOs evaluated from the database history, counting the same events as the spec's
PromQL, and the performance SLOs' targets (docs/slos.md)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from grafana import slo_rules
from grafana.slo_rules import seconds
from pipeline import history
from pipeline.metrics import FRESHNESS_BUCKETS, LATENCY_BUCKETS
from pipeline.performance import activity

SPEC = Path(__file__).resolve().parent / "slos.yaml"
# The SLIs' thresholds: a bucket bound of each histogram (tests/pipeline/test_slos.py checks the
# spec's PromQL selects the same `le`).
FRESHNESS_THRESHOLD_SECONDS = 3600
LATENCY_THRESHOLD_SECONDS = 30
COMPLIANCE_WINDOWS = ("1h", "1d")  # and the spec's period (30d)
BURN_WINDOWS = ("1h", "6h")


@functools.cache
def spec() -> slo_rules.Spec:
    """The one spec, as grafana/slo_rules.py reads it to generate the rules."""
    return slo_rules.load(SPEC)


def performance() -> dict[str, slo_rules.PerformanceSlo]:
    return {s.name: s for s in spec().performance}


def target(name: str) -> float:
    """A performance SLO's target: its EMBEDPORTAL_SLO_* setting when set, else the spec's."""
    slo = performance()[name]
    value = getattr(settings, slo.setting, "")
    return slo.target if value in ("", None) else float(value)


def targets() -> dict[str, float]:
    return {name: target(name) for name in performance()}


@dataclass(frozen=True)
class Events:
    good: int
    total: int

    @property
    def bad(self) -> int:
        return self.total - self.good

    @property
    def ratio(self) -> float | None:
        """Good / total; None without events."""
        return self.good / self.total if self.total else None


def events(name: str, t: activity.Totals) -> Events:
    """One SLI's good and total events in some history totals."""
    if name == "freshness":
        return Events(sum(t.freshness[: FRESHNESS_BUCKETS.index(FRESHNESS_THRESHOLD_SECONDS) + 1]), sum(t.freshness))
    if name == "failures":
        return Events(t.embedded, t.embedded + t.failed)
    if name == "latency":
        return Events(sum(t.latency[: LATENCY_BUCKETS.index(LATENCY_THRESHOLD_SECONDS) + 1]), sum(t.latency))
    raise ValueError(f"no SLI named {name!r} in the history")


@dataclass
class Status:
    name: str
    objective: float
    description: str
    period: str
    # window -> events and compliance (good / total, None without events)
    windows: dict[str, Events] = field(default_factory=dict)
    burn_rates: dict[str, float | None] = field(default_factory=dict)
    budget_left: float | None = None

    @property
    def compliance(self) -> dict[str, float | None]:
        return {w: e.ratio for w, e in self.windows.items()}

    @property
    def met(self) -> bool | None:
        """Over the period: is the objective met? None without events."""
        ratio = self.windows[self.period].ratio
        return None if ratio is None else ratio >= self.objective

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "objective": self.objective,
            "description": self.description,
            "period": self.period,
            "compliance": self.compliance,
            "events": {w: {"good": e.good, "total": e.total} for w, e in self.windows.items()},
            "error_budget_left": self.budget_left,
            "burn_rate": self.burn_rates,
            "met": self.met,
        }


def window_totals(window: str, now: datetime, collection_id: int | None = None) -> activity.Totals:
    """History totals of the last `window`, the current minute included (whole minutes and hours)."""
    until = history.minute_of(now) + timedelta(minutes=1)
    return activity.totals(until - timedelta(seconds=seconds(window)), until, collection_id)


def statuses(now: datetime | None = None, collection_id: int | None = None) -> list[Status]:
    """Every SLO's compliance over 1 h, 1 d and the period, its error budget left over the period
    (1 - bad ratio / budget: 1 untouched, 0 spent, below 0 the SLO is missed) and its burn rate
    over 1 h and 6 h (bad ratio / budget: 1 spends the budget in exactly one period)."""
    now = now or timezone.now()
    the_spec = spec()
    windows = sorted({*COMPLIANCE_WINDOWS, *BURN_WINDOWS, the_spec.period}, key=seconds)
    totals = {w: window_totals(w, now, collection_id) for w in windows}
    out = []
    for objective in the_spec.slos:
        found = {w: events(objective.name, totals[w]) for w in windows}
        status = Status(objective.name, objective.objective / 100, objective.description, the_spec.period)
        status.windows = {w: found[w] for w in (*COMPLIANCE_WINDOWS, the_spec.period)}
        status.burn_rates = {w: burn_rate(found[w], objective.budget) for w in BURN_WINDOWS}
        period_burn = burn_rate(found[the_spec.period], objective.budget)
        status.budget_left = None if period_burn is None else 1 - period_burn
        out.append(status)
    return out


def burn_rate(found: Events, budget: float) -> float | None:
    return None if not found.total else (found.bad / found.total) / budget
