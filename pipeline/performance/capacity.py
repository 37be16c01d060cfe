"""Capacity: the docs/s the pipeline sustains (`measure`, a USL fit) and when arrivals outgrow it
(`plan`); docs/architecture.md and docs/capacity.md say how."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.forms.models import model_to_dict
from django.utils import timezone

from embedportal.scratch import scratch_database
from pipeline import encoder, history
from pipeline.loadharness import chunking_of, document_chars, measure_workers, preflight, warm_up
from pipeline.models import CapacityMeasurement, Collection
from pipeline.performance import activity
from pipeline.providers import LOCAL_MODEL

# Trend: at least this many days of hourly arrivals; the last TREND_DAYS days at most.
MIN_TREND_DAYS = 3
TREND_DAYS = 28
# Below this the fitted kappa is noise: no peak N* is claimed.
KAPPA_EPSILON = 1e-6


def usl(n: Any, lam: float, sigma: float, kappa: float) -> Any:
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


@dataclass
class UslFit:
    lam: float | None
    sigma: float | None
    kappa: float | None
    note: str

    @property
    def peak_workers(self) -> float | None:
        """N*: where throughput peaks (None when kappa is 0 or unknown: no peak)."""
        return None if self.sigma is None or not self.kappa else math.sqrt(max(0.0, 1 - self.sigma) / self.kappa)

    @property
    def determined(self) -> bool:
        """Fitted from three worker counts or more (fewer: see the note for what was assumed)."""
        return None not in (self.lam, self.sigma, self.kappa) and not self.note.startswith("underdetermined")

    def rate(self, workers: float) -> float | None:
        return None if self.lam is None else float(usl(workers, self.lam, self.sigma or 0.0, self.kappa or 0.0))


def fit_usl(points: dict[int, float]) -> UslFit:
    """Fit X(N) to measured {workers: docs/s}. One point gives lambda only (if N = 1); two give
    lambda and sigma with kappa assumed 0 (Amdahl's law); three or more a least-squares fit."""
    ns = sorted(points)
    if not ns:
        return UslFit(None, None, None, "no measurements")
    if ns == [1]:
        note = "lambda is the 1-worker rate, sigma and kappa are unknown (no scaling figure)"
        return UslFit(points[1], None, None, f"underdetermined: 1 worker count (1) for 3 parameters; {note}")
    if len(ns) == 1:
        note = f"underdetermined: 1 worker count ({ns[0]}) for 3 parameters; measure 1 worker as well to know lambda"
        return UslFit(None, None, None, note)
    if len(ns) == 2:
        (n1, x1), (n2, x2) = ((n, points[n]) for n in ns)
        # With kappa = 0: x_i (1 + sigma (n_i - 1)) = lambda n_i for both points.
        denominator = x2 * (n2 - 1) * n1 - x1 * (n1 - 1) * n2
        sigma = min(1.0, max(0.0, (x1 * n2 - x2 * n1) / denominator if denominator else 0.0))
        lam = x1 * (1 + sigma * (n1 - 1)) / n1
        note = (
            f"underdetermined: 2 worker counts ({n1}, {n2}) for 3 parameters; kappa assumed 0 (Amdahl), "
            "so no peak N* is known: measure a third worker count"
        )
        if x2 <= x1:
            note += f"; {n2} workers were no faster than {n1} ({x2:.3g} vs {x1:.3g} docs/s): more workers do not help"
        return UslFit(lam, sigma, 0.0, note)
    import numpy as np
    from scipy.optimize import curve_fit

    n = np.array(ns, dtype=float)
    x = np.array([points[k] for k in ns], dtype=float)
    lam0 = points[1] if 1 in points else x[0] / n[0]
    (lam, sigma, kappa), _ = curve_fit(
        usl, n, x, p0=[lam0, 0.05, 0.01], bounds=([0.0, 0.0, 0.0], [np.inf, 1.0, 1.0]), maxfev=20000
    )
    # A coherence cost the points cannot tell from 0 (the optimiser returns ~1e-20) has no peak.
    fit = UslFit(float(lam), float(sigma), float(kappa) if kappa > KAPPA_EPSILON else 0.0, "")
    residual = max(abs(fit.rate(k) - points[k]) / points[k] for k in ns)
    fit.note = f"least squares over {len(ns)} worker counts; largest relative residual {residual:.1%}"
    if not fit.kappa and fit.sigma:
        fit.note += f"; kappa ~ 0: no peak, throughput approaches lambda/sigma = {fit.lam / fit.sigma:.3g} docs/s"
    return fit


def measure(model: str, worker_counts: list[int], documents: int, progress: Callable) -> CapacityMeasurement:
    """Measure every worker count on the scratch database (embedportal.scratch: production's workers
    keep running and its queue sees nothing), fit the USL, store the CapacityMeasurement in production."""
    chars, chunking = document_chars(model), chunking_of(model)  # production's documents and collections
    points = []
    with scratch_database():
        preflight()
        warm_up(model)
        for n in worker_counts:
            points.append(measure_workers(model, n, documents, chars, chunking))
            progress(points[-1])
    fit = fit_usl({p.workers: p.docs_per_second for p in points})
    return CapacityMeasurement.objects.create(
        model=model,
        measured_at=timezone.now(),
        documents=documents,
        chars_per_document=chars,
        points=[asdict(p) for p in points],
        usl_lambda=fit.lam,
        usl_sigma=fit.sigma,
        usl_kappa=fit.kappa,
        peak_workers=fit.peak_workers,
        fit_note=fit.note,
        local_encoder=runtime(model),
    )


def runtime(model: str) -> str:
    """What `model` runs on here: the local encoder's runtime/precision (pipeline.encoder), '' for others."""
    return encoder.label(encoder.current()) if model == LOCAL_MODEL else ""


def sizing() -> QuerySet[CapacityMeasurement]:
    """The measurements that size this deployment: a local-model figure only if measured on the
    runtime serving now (one taken under PyTorch says nothing of OpenVINO bf16, 3.65x faster)."""
    measurements = CapacityMeasurement.objects.all()
    if measurements.filter(model=LOCAL_MODEL).exists():  # only then load the encoder to know what serves
        measurements = measurements.exclude(Q(model=LOCAL_MODEL) & ~Q(local_encoder=runtime(LOCAL_MODEL)))
    return measurements


def latest() -> CapacityMeasurement | None:
    return sizing().order_by("-measured_at").first()


def other_runtimes() -> str:
    """Why `plan` has no capacity when only other runtimes' local-model measurements exist."""
    found = set(CapacityMeasurement.objects.filter(model=LOCAL_MODEL).values_list("local_encoder", flat=True))
    if not found:
        return ""
    measured = ", ".join(sorted(r or "an unrecorded runtime" for r in found))
    return f" on the runtime serving now ({runtime(LOCAL_MODEL)}); {LOCAL_MODEL} was measured on {measured}"


def fit_of(m: CapacityMeasurement) -> UslFit:
    return UslFit(m.usl_lambda, m.usl_sigma, m.usl_kappa, m.fit_note)


def measurement_dict(m: CapacityMeasurement) -> dict[str, Any]:
    """A measurement with its USL fit, JSON-ready (manage.py measure_capacity --json, GET /api/v1/slos/)."""
    usl_fit = {"lambda": m.usl_lambda, "sigma": m.usl_sigma, "kappa": m.usl_kappa, "peak_workers": m.peak_workers}
    fields = ["model", "documents", "chars_per_document", "points", "fit_note", "local_encoder"]
    return {**model_to_dict(m, fields), "measured_at": m.measured_at.isoformat(), "usl": usl_fit}


@dataclass
class Capacity:
    docs_per_second: float  # per_pod x replicas: the most the autoscaler's largest cluster embeds
    per_pod: float
    workers: int  # worker processes per pod (EMBEDPORTAL_CAPACITY_WORKERS)
    replicas: int  # worker pods at most (EMBEDPORTAL_MAX_WORKER_REPLICAS)
    model: str
    measured_at: datetime
    how: str  # "measured", "usl" or "lower bound"
    runtime: str  # the local model's runtime/precision it was measured on ('' for other models)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "measured_at": self.measured_at.isoformat()}


def capacity_of(m: CapacityMeasurement) -> Capacity | None:
    """One pod's rate at EMBEDPORTAL_CAPACITY_WORKERS by `m` (measured, else predicted, else the largest
    measured count's: a lower bound) times EMBEDPORTAL_MAX_WORKER_REPLICAS; None if `m` says nothing of it."""
    n, replicas = settings.EMBEDPORTAL_CAPACITY_WORKERS, settings.EMBEDPORTAL_MAX_WORKER_REPLICAS
    fit, below = fit_of(m), [p for p in m.points if p["workers"] < n]
    if (rate := m.rate(n)) is not None:
        how = "measured"
    elif fit.lam is not None and fit.sigma is not None:
        rate, how = round(fit.rate(n), 3), "usl"
    elif below:
        rate, how = max(below, key=lambda p: p["workers"])["docs_per_second"], "lower bound"
    else:
        return None
    return Capacity(round(rate * replicas, 3), rate, n, replicas, m.model, m.measured_at, how, m.local_encoder)


def current() -> Capacity | None:
    """The capacity of the models in use (every measured one when none is): per model, its latest
    measurement on the runtime serving now; the slowest model's, which the whole peak may fall on."""
    latest_per_model = sizing().order_by("model", "-measured_at").distinct("model")
    found = [c for m in latest_per_model if (c := capacity_of(m)) is not None]
    in_use = models_in_use()
    return min([c for c in found if c.model in in_use] or found, key=lambda c: c.docs_per_second, default=None)


def models_in_use(collection_id: int | None = None, user: Any = None) -> set[str]:
    """The models of the user collections `user` sees (or of one); reserved scratch collections are no load."""
    scope = Collection.objects.filter(pk=collection_id) if collection_id else Collection.objects.visible_to(user)
    return set(scope.user_collections().values_list("model", flat=True))


@dataclass
class Plan:
    now: datetime
    headroom_wanted: float
    enough_history: bool
    needs: str = ""  # what is missing, when the history or the measurement is not enough
    history_hours: float = 0.0
    arrivals_last_hour: float = 0.0  # docs/s
    daily_peaks: list[tuple[date, float]] = field(default_factory=list)  # (day, busiest hour's docs/s)
    peak: float | None = None  # the last day's busiest hour, docs/s
    trend_per_day: float | None = None  # docs/s per day
    trend_intercept: float | None = None  # docs/s at day 0 (the first daily peak's day)
    capacity: Capacity | None = None
    headroom: float | None = None  # 1 - peak / capacity
    exceeds_on: date | None = None
    exceeded_now: bool = False
    workers_needed: int | None = None
    workers_note: str = ""

    def trend_at(self, day: date) -> float | None:
        if self.trend_per_day is None or not self.daily_peaks:
            return None
        return self.trend_intercept + self.trend_per_day * (day - self.daily_peaks[0][0]).days

    def as_dict(self) -> dict[str, Any]:
        cap = self.capacity
        return {
            "now": self.now.isoformat(),
            "headroom_wanted": self.headroom_wanted,
            "enough_history": self.enough_history,
            "needs": self.needs or None,
            "history_hours": round(self.history_hours, 1),
            "arrivals_last_hour_docs_per_second": round(self.arrivals_last_hour, 4),
            "daily_peaks": [{"day": d.isoformat(), "docs_per_second": round(v, 4)} for d, v in self.daily_peaks],
            "peak_docs_per_second": None if self.peak is None else round(self.peak, 4),
            "trend_docs_per_second_per_day": None if self.trend_per_day is None else round(self.trend_per_day, 6),
            "capacity": None if cap is None else cap.as_dict(),
            "headroom": None if self.headroom is None else round(self.headroom, 4),
            "exceeded_now": self.exceeded_now,
            "exceeds_on": None if self.exceeds_on is None else self.exceeds_on.isoformat(),
            "workers_needed": self.workers_needed,
            "workers_note": self.workers_note or None,
        }


def _hours(hours: float) -> str:
    if hours < 48:
        return f"{hours:.0f} hour{'s' if round(hours) != 1 else ''}"
    return f"{hours / 24:.1f} days"


def daily_peaks(now: datetime, first: datetime) -> list[tuple[date, float]]:
    """Per 24 h period ending at the current hour (oldest first, only periods the history covers
    whole, at most TREND_DAYS): the busiest hour's arrivals, in docs/s."""
    end = history.hour_of(now)
    days = min(TREND_DAYS, int((end - first).total_seconds() // 86400))
    if days <= 0:
        return []
    since = end - timedelta(days=days)
    hourly = [p.totals.arrived for p in activity.series(since, end, 3600)]
    return [((since + timedelta(days=d)).date(), max(hourly[d * 24 : (d + 1) * 24]) / 3600.0) for d in range(days)]


def workers_for(rate: float, fit: UslFit, limit: int = 256) -> tuple[int | None, str]:
    """The fewest workers whose predicted throughput reaches `rate`, by the USL fit."""
    if fit.lam is None:
        return None, "no USL fit: measure_capacity with 1 worker at least"
    assumed = "" if fit.determined and fit.kappa else f" ({fit.note})"
    top = fit.peak_workers
    for n in range(1, limit + 1):
        if fit.rate(n) >= rate:
            return n, f"USL prediction{assumed}"
        if top is not None and n > top:
            best = fit.rate(round(top))
            return None, (
                f"no worker count reaches {rate:.3g} docs/s: throughput peaks at N*={top:.1f} workers "
                f"({best:.3g} docs/s); a faster model, provider or database is needed"
            )
    return None, f"more than {limit} workers{assumed}"


def plan(headroom: float = 0.3, now: datetime | None = None) -> Plan:
    """Load, capacity, headroom, the projected date arrivals exceed capacity, workers needed."""
    from scipy.stats import linregress

    now = now or timezone.now()
    p = Plan(now=now, headroom_wanted=headroom, enough_history=False, capacity=current())
    p.arrivals_last_hour = activity.totals(now - timedelta(hours=1), now + timedelta(minutes=1)).arrived / 3600.0
    first = activity.first_start()
    p.history_hours = 0.0 if first is None else max(0.0, (now - first).total_seconds() / 3600)
    p.daily_peaks = [] if first is None else daily_peaks(now, first)
    if p.daily_peaks:
        p.peak = p.daily_peaks[-1][1]
    if len(p.daily_peaks) < MIN_TREND_DAYS:
        p.needs = (
            f"needs at least {MIN_TREND_DAYS} days of hourly arrivals, "
            f"have {_hours(p.history_hours) if first else 'none'}"
        )
    else:
        p.enough_history = True
        xs = [(d - p.daily_peaks[0][0]).days for d, _ in p.daily_peaks]
        fit = linregress(xs, [v for _, v in p.daily_peaks])
        p.trend_per_day, p.trend_intercept = float(fit.slope), float(fit.intercept)
    cap = p.capacity
    if cap is None:
        missing = f"no capacity measurement{other_runtimes()}: run manage.py measure_capacity"
        p.needs = "; ".join(filter(None, [p.needs, missing]))
        return p
    if p.peak is not None:
        p.headroom = 1 - p.peak / cap.docs_per_second
        p.exceeded_now = p.peak > cap.docs_per_second
        measurement = sizing().filter(model=cap.model).order_by("-measured_at").first()
        wanted = p.peak / (1 - headroom)
        p.workers_needed, note = workers_for(wanted, fit_of(measurement))
        p.workers_note = f"{wanted:.3g} docs/s keeps {headroom:.0%} headroom at the last day's peak: {note}"
    if p.enough_history and not p.exceeded_now and p.trend_per_day and p.trend_per_day > 0:
        crossing = (cap.docs_per_second - p.trend_intercept) / p.trend_per_day
        p.exceeds_on = p.daily_peaks[0][0] + timedelta(days=math.ceil(crossing))
        if p.exceeds_on <= now.date():
            p.exceeded_now, p.exceeds_on = True, None
    return p
