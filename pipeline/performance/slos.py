"""The pipeline's six SLOs from the one spec, slos.yaml (which also generates the Prometheus rules),
and the one evaluator of the database side (`evaluate`); docs/architecture.md says who reads it."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from grafana import slo_rules
from grafana.slo_rules import seconds
from pipeline import history
from pipeline.metrics import CALL_BUCKETS, LATENCY_BUCKETS
from pipeline.percentiles import window_where
from pipeline.performance import activity, capacity
from pipeline.performance.optimizer.figures import STEP_SQL

SPEC = Path(__file__).resolve().parent / "slos.yaml"
# The latency SLI's threshold: a bucket bound of its histogram (tests/pipeline/test_slos.py checks the
# spec's PromQL selects the same `le`). Freshness has none: each collection's own freshness_sla
# judges its documents when a batch is recorded (pipeline.recording).
LATENCY_THRESHOLD_SECONDS = 30
COMPLIANCE_WINDOWS = ("1h", "1d")  # and the spec's period (30d)
BURN_WINDOWS = ("1h", "6h")


@functools.cache
def spec() -> slo_rules.Spec:
    """The one spec, as grafana/slo_rules.py reads it to generate the rules."""
    return slo_rules.load(SPEC)


def performance() -> dict[str, slo_rules.PerformanceSlo]:
    return {s.name: s for s in spec().performance}


def target(name: str) -> float | None:
    """A performance SLO's target: its EMBEDPORTAL_SLO_* setting when it has one and it is set, else the
    spec's (None for throughput_per_worker: a model never measured is held to no target)."""
    slo = performance()[name]
    value = getattr(settings, slo.setting, "") if slo.setting else ""
    return slo.target if value in ("", None) else float(value)


def targets() -> dict[str, float | None]:
    return {name: target(name) for name in performance()}


def throughput_targets() -> dict[str, float]:
    """Docs/s per busy worker each measured model is held to: its latest sizing measurement's one-worker
    rate (USL lambda, else the smallest worker count's rate per worker) times the spec's capacity_factor."""
    factor = performance()["throughput_per_worker"].capacity_factor
    out = {}
    for m in capacity.sizing().order_by("model", "-measured_at").distinct("model"):
        smallest = min(m.points, key=lambda p: p["workers"], default=None)
        rate = m.usl_lambda or (smallest and smallest["docs_per_second"] / smallest["workers"])
        if rate:
            out[m.model] = round(rate * factor, 3)
    return out


@dataclass(frozen=True)
class Events:
    good: float
    total: float

    @property
    def bad(self) -> int:
        return self.total - self.good

    @property
    def ratio(self) -> float | None:
        """Good / total; None without events."""
        return self.good / self.total if self.total else None


def events(name: str, t: activity.Totals) -> Events:
    """An event SLO's good and total events in some history totals."""
    if name == "freshness":
        return Events(t.fresh, sum(t.freshness))
    if name == "failures":
        return Events(t.embedded, t.embedded + t.failed)
    if name == "latency":
        return Events(sum(t.latency[: LATENCY_BUCKETS.index(LATENCY_THRESHOLD_SECONDS) + 1]), sum(t.latency))
    if name == "search_latency":  # its target is a bound of the search histogram (tests/pipeline/test_slos.py checks)
        return Events(sum(t.searches[: CALL_BUCKETS.index(target(name)) + 1]), sum(t.searches))
    raise ValueError(f"no SLI named {name!r} in the history")


def evaluate(
    since: datetime, until: datetime, steps: int = 1, collection_id: int | None = None, only: set[str] | None = None
) -> dict[str, list[Events]]:
    """Every SLO's (or `only` these) good and total events in each of `steps` equal steps of [since, until)."""
    wanted = [s.name for s in (*spec().slos, *spec().performance) if only is None or s.name in only]
    out: dict[str, list[Events]] = {}
    if event_slos := [n for n in wanted if n in {*(s.name for s in spec().slos), "search_latency"}]:
        points = activity.series(since, until, round((until - since).total_seconds() / steps), collection_id)
        out.update({n: [events(n, p.totals) for p in points] for n in event_slos})
    if {"document_latency", "throughput_per_worker"} & set(wanted):
        out.update(_batch_events(since, until, steps, collection_id))
    return {n: out[n] for n in wanted}


def model_targets(collection_id: int | None = None, user: Any = None) -> list[dict]:
    """The throughput SLO's target for each model of the user collections `user` sees (or of one), and its source."""
    measured, fallback = throughput_targets(), target("throughput_per_worker")
    setting = performance()["throughput_per_worker"].setting
    unmeasured = setting if fallback is not None else "not held: never measured (manage.py measure_capacity)"
    return [
        {
            "model": m,
            "docs_per_second": measured.get(m, fallback),
            "from": "capacity measurement" if m in measured else unmeasured,
        }
        for m in sorted(capacity.models_in_use(collection_id, user))
    ]


def _batch_events(since: datetime, until: datetime, steps: int, collection_id: int | None) -> dict[str, list[Events]]:
    """Per step: documents within the latency target of all, bulk loads' left out (BatchTiming.bulk);
    documents stored against those owed at each model's throughput target over its busy seconds (capped
    per model; a model without a target counts for neither)."""
    where, params = window_where(since, collection_id)
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT {STEP_SQL} AS step, c.model, "
            "sum(t.documents) FILTER (WHERE t.total_seconds <= %s AND NOT t.bulk), "
            "sum(t.documents) FILTER (WHERE NOT t.bulk), sum(t.documents), sum(t.claim_seconds + t.total_seconds) "
            "FROM pipeline_batchtiming t JOIN pipeline_collection c ON c.id = t.collection_id "
            f"WHERE {where} AND t.finished_at < %s GROUP BY 1, 2",
            [since, (until - since).total_seconds() / steps, target("document_latency"), *params, until],
        )
        rows = cur.fetchall()
    rates, fallback = throughput_targets(), target("throughput_per_worker")
    latency, throughput = [Events(0, 0)] * steps, [Events(0, 0)] * steps
    for step, model, good, judged, documents, busy in rows:
        latency[step] = Events(latency[step].good + (good or 0), latency[step].total + (judged or 0))
        if (rate := rates.get(model, fallback)) is not None:
            owed = rate * busy
            throughput[step] = Events(throughput[step].good + min(documents, owed), throughput[step].total + owed)
    return {"document_latency": latency, "throughput_per_worker": throughput}


@dataclass
class Status:
    name: str
    objective: float
    description: str
    period: str
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


def statuses(now: datetime | None = None, collection_id: int | None = None) -> list[Status]:
    """Every SLO's compliance over 1 h, 1 d and the period (whole minutes, the current one included),
    its error budget left over the period and its burn rate over 1 h and 6 h (docs/slos.md)."""
    the_spec = spec()
    until = history.minute_of(now or timezone.now()) + timedelta(minutes=1)
    windows = sorted({*COMPLIANCE_WINDOWS, *BURN_WINDOWS, the_spec.period}, key=seconds)
    found = {w: evaluate(until - timedelta(seconds=seconds(w)), until, 1, collection_id) for w in windows}
    out = []
    for slo in (*the_spec.slos, *the_spec.performance):
        status = Status(slo.name, round(slo.objective / 100, 6), slo.description, the_spec.period)
        status.windows = {w: found[w][slo.name][0] for w in (*COMPLIANCE_WINDOWS, the_spec.period)}
        budget = 1 - status.objective
        status.burn_rates = {w: burn_rate(found[w][slo.name][0], budget) for w in BURN_WINDOWS}
        period_burn = burn_rate(found[the_spec.period][slo.name][0], budget)
        status.budget_left = None if period_burn is None else 1 - period_burn
        out.append(status)
    return out


def burn_rate(found: Events, budget: float) -> float | None:
    return None if not found.total or budget <= 0 else (found.bad / found.total) / budget
