"""Figures for the admin's "SLOs and capacity" page and GET /api/v1/slos/ (one dict, the same
numbers), all from the database; the browser draws the `series` part with the vendored Chart.js."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from pipeline.metrics import FRESHNESS_BUCKETS, LATENCY_BUCKETS
from pipeline.models import Collection, default_freshness_sla
from pipeline.performance import activity, capacity, slos
from pipeline.performance.optimizer.figures import db_trend

# Each range's span and step (seconds).
RANGES = {
    "1h": (timedelta(hours=1), 60),
    "6h": (timedelta(hours=6), 60),
    "24h": (timedelta(hours=24), 300),
    "7d": (timedelta(days=7), 3600),
    "30d": (timedelta(days=30), 3600),
}
DEFAULT_RANGE = "6h"
# The arrivals chart projects the trend this far past the last daily peak when it never crosses capacity.
PROJECTION_DAYS = 14


HEADROOM = "a share of capacity from 0 to below 1, e.g. 0.3"


class BadRequest(ValueError):
    """A query parameter the page or the API cannot use, named by `parameter`; the message says what to send."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _series(
    now: datetime, span: timedelta, step: int, collection_id: int | None, cap: capacity.Capacity | None, sla: float
) -> dict[str, Any]:
    # Steps end at the current step's end, so the current (partial) step is the last point.
    end = datetime.fromtimestamp((now.timestamp() // step + 1) * step, now.tzinfo)
    points = activity.series(end - span, end, step, collection_id)
    per_minute = 60 / step
    fresh = [slos.events("freshness", p.totals).ratio for p in points]
    # Per-document percentiles of the batch rows (kept EMBEDPORTAL_BATCH_TIMING_RETENTION_DAYS).
    trend = db_trend(end - span, end, len(points), collection_id)
    return {
        "step_seconds": step,
        "labels": [p.start.isoformat() for p in points],
        "embedded_per_minute": [round(p.totals.embedded * per_minute, 3) for p in points],
        "failed": [p.totals.failed for p in points],
        "arrived_per_minute": [round(p.totals.arrived * per_minute, 3) for p in points],
        "queue_depth": [p.totals.queue_depth for p in points],
        "capacity_per_minute": None if cap is None else round(cap.docs_per_second * 60, 3),
        # The queue is bounded when capacity drains it within the freshness SLA (sla, seconds).
        "queue_bound": None if cap is None else round(cap.docs_per_second * sla),
        "freshness_percent": [None if ratio is None else round(100 * ratio, 3) for ratio in fresh],
        "latency_seconds": {name: [_round(v) for v in trend[name]["total"]] for name in ("p50", "p95", "p99")},
    }


def _arrivals(plan: capacity.Plan) -> dict[str, Any]:
    """Daily peaks, the fitted trend over them and its projection up to capacity (or 14 days)."""
    days = [d for d, _ in plan.daily_peaks]
    trend: list[float | None] = []
    if plan.trend_per_day is not None and days:
        last = plan.exceeds_on or days[-1] + timedelta(days=PROJECTION_DAYS)
        extra = max(0, (last - days[-1]).days)
        days = days + [days[-1] + timedelta(days=i) for i in range(1, min(extra, 366) + 1)]
        trend = [_round(plan.trend_at(d)) for d in days]
    return {
        "days": [d.isoformat() for d in days],
        "peak_docs_per_second": [_round(v) for _, v in plan.daily_peaks],
        "trend_docs_per_second": trend,
        "capacity_docs_per_second": None if plan.capacity is None else plan.capacity.docs_per_second,
    }


def collection_named(name: str | None, user: Any = None) -> Collection | None:
    """The named collection among those `user` sees (None: the platform, every one)."""
    if not name:
        return None
    try:
        return Collection.objects.visible_to(user).get(name=name)
    except Collection.DoesNotExist:
        raise BadRequest("collection", f"no collection named {name!r}") from None


def freshness_sla(chosen: Collection | None) -> timedelta:
    """The collection's freshness SLA; for all user collections the tightest (the shared queue must
    drain within it for every collection to meet its own)."""
    if chosen:
        return chosen.freshness_sla
    slas = Collection.objects.user_collections().values_list("freshness_sla", flat=True)
    return min(slas, default=default_freshness_sla())


def figures(
    range_name: str = DEFAULT_RANGE, collection: str | None = None, headroom: float = 0.3, user: Any = None
) -> dict[str, Any]:
    """SLO statuses, the capacity plan, the last measurement and the chart series, JSON-ready. The
    freshness SLO judges each document against its own collection's SLA; `freshness_sla_seconds`
    is the SLA the queue bound drains within (freshness_sla)."""
    if range_name not in RANGES:
        raise BadRequest("range", f"unknown range {range_name!r}; use one of {', '.join(RANGES)}")
    if not 0 <= headroom < 1:
        raise BadRequest("headroom", HEADROOM)
    now = timezone.now()
    chosen = collection_named(collection, user)
    collection_id = chosen.pk if chosen else None
    plan = capacity.plan(headroom, now)
    sla_seconds = freshness_sla(chosen).total_seconds()
    measured = capacity.latest()
    return {
        "now": now.isoformat(),
        "collection": chosen.name if chosen else None,
        "range": range_name,
        "freshness_sla_seconds": sla_seconds,
        "slos": [s.as_dict() for s in slos.statuses(now, collection_id)],
        "throughput_targets": slos.model_targets(collection_id, user),
        "capacity": plan.as_dict(),
        "measurement": None if measured is None else capacity.measurement_dict(measured),
        "series": _series(now, *RANGES[range_name], collection_id, plan.capacity, sla_seconds),
        "arrivals": _arrivals(plan),
        "bucket_bounds": {"latency_seconds": list(LATENCY_BUCKETS), "freshness_seconds": list(FRESHNESS_BUCKETS)},
    }


NO_DATA = "no data"


def _percent(value: float | None, digits: int = 2) -> str:
    return NO_DATA if value is None else f"{100 * value:.{digits}f}%"


def table(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """The SLO table as the page shows it: "no data" for a window without events."""
    return [
        {
            "name": s["name"],
            "description": s["description"],
            "objective": _percent(s["objective"], 1),
            "compliance": [(w, _percent(v), v is None) for w, v in s["compliance"].items()],
            "budget_left": _percent(s["error_budget_left"], 1),
            "burn_rate": [(w, NO_DATA if v is None else f"{v:.2f}×", v is None) for w, v in s["burn_rate"].items()],
            "state": {True: "met", False: "missed", None: NO_DATA}[s["met"]],
        }
        for s in figures["slos"]
    ]
