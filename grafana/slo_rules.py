"""SLO spec (pipeline/performance/slos.yaml) -> Prometheus recording rules and burn-rate alerts
(slo.rules.yml, Sloth's series names) and the performance SLOs' compliance alerts
(performance.rules.yml); docs/slos.md ("What is generated") lists the series and alerts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
# The spec lives in the pipeline package: the app computes the same SLOs from its database history
# (pipeline.performance.slos), and the image ships the pipeline package, not grafana/.
SPEC = ROOT / "pipeline" / "performance" / "slos.yaml"
OUTPUT = ROOT / "grafana" / "prometheus" / "slo.rules.yml"
# The existing convention (failures.rules.yml): the published docs site, one page per runbook.
RUNBOOK_BASE = "https://embedportal.example/docs/runbooks/"

SLI_GROUP = "embedding-pipeline-slo-sli"
META_GROUP = "embedding-pipeline-slo-meta"
ALERT_GROUP = "embedding-pipeline-slo-alerts"

_SECONDS = {"m": 60, "h": 3600, "d": 86400}


class SpecError(ValueError):
    pass


def seconds(window: str) -> int:
    match = re.fullmatch(r"(\d+)([mhd])", window)
    if not match:
        raise SpecError(f"window {window!r}: write it as <n>m, <n>h or <n>d")
    return int(match[1]) * _SECONDS[match[2]]


@dataclass(frozen=True)
class WindowPair:
    long: str
    short: str
    factor: float


@dataclass(frozen=True)
class Severity:
    kind: str  # page or ticket (Sloth's sloth_severity)
    severity: str  # the alert's severity label
    pairs: tuple[WindowPair, ...]


@dataclass(frozen=True)
class Slo:
    name: str
    objective: float  # percent
    description: str
    error_query: str
    total_query: str
    alerting: dict[str, str]  # the burn-rate alerts' name (before FastBurn/SlowBurn), runbook and summary

    @property
    def budget(self) -> float:
        # round(): 1 - 0.999 is 0.0010000000000000009 in binary floating point.
        return round(1 - self.objective / 100, 10)


@dataclass(frozen=True)
class PerformanceSlo:
    """A compliance (0..1) the app exports; `alerting` says below what and for how long it alerts."""

    name: str
    target: float | None  # the default of `setting`, which overrides it; None: no target unless set
    alerting: dict[str, Any]
    objective: float  # percent of compliance over the period
    description: str
    setting: str = ""
    # throughput_per_worker: the share of a model's measured one-worker rate it is held to.
    capacity_factor: float = 1.0
    # Judged by Prometheus from this histogram summed over every pod (le = target), not from the gauge.
    histogram: str = ""


@dataclass(frozen=True)
class Spec:
    service: str
    labels: dict[str, str]
    period: str
    severities: tuple[Severity, ...]
    slos: tuple[Slo, ...]
    performance: tuple[PerformanceSlo, ...] = ()

    @property
    def windows(self) -> list[str]:
        """Every window a ratio is recorded over: the alert windows and the period, shortest first."""
        found = {w for s in self.severities for p in s.pairs for w in (p.long, p.short)} | {self.period}
        return sorted(found, key=seconds)


def load(path: Path = SPEC) -> Spec:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if data.get("version") != "prometheus/v1":
        raise SpecError(f"{path}: version must be prometheus/v1")
    severities = []
    for kind in ("page", "ticket"):
        block = data["burn_rate_alerts"][kind]
        pairs = tuple(WindowPair(str(w["long"]), str(w["short"]), float(w["factor"])) for w in block["windows"])
        for pair in pairs:
            if seconds(pair.short) >= seconds(pair.long):
                raise SpecError(f"{kind}: the short window {pair.short} must be shorter than {pair.long}")
        severities.append(Severity(kind, block["severity"], pairs))
    slos = []
    for raw in data["slos"]:
        events = raw["sli"]["events"]
        for key in ("error_query", "total_query"):
            if "{{.window}}" not in events[key]:
                raise SpecError(f"SLO {raw['name']}: {key} has no [{{{{.window}}}}] range")
        if not 0 < float(raw["objective"]) < 100:
            raise SpecError(f"SLO {raw['name']}: objective is a percentage between 0 and 100")
        queries = (events["error_query"], events["total_query"])
        slos.append(Slo(raw["name"], float(raw["objective"]), raw["description"], *queries, raw["alerting"]))
    seconds(str(data["period"]))
    performance = tuple(
        PerformanceSlo(
            **{**raw, "target": raw["target"] and float(raw["target"]), "objective": float(raw["objective"])}
        )
        for raw in data.get("performance_slos") or ()
    )
    labels = dict(data.get("labels") or {})
    return Spec(data["service"], labels, str(data["period"]), tuple(severities), tuple(slos), performance)


def sli_expr(slo: Slo, window: str) -> str:
    """The error ratio over `window`; no value (not 0, not NaN) when there were no events."""
    error = slo.error_query.replace("{{.window}}", window)
    total = slo.total_query.replace("{{.window}}", window)
    return f"(\n  {error}\n)\n/\n(\n  {total} > 0\n)"


def _ids(spec: Spec, slo: Slo) -> dict[str, str]:
    return {"sloth_id": f"{spec.service}-{slo.name}", "sloth_service": spec.service, "sloth_slo": slo.name}


def _sel(spec: Spec, slo: Slo) -> str:
    return f'{{sloth_id="{_ids(spec, slo)["sloth_id"]}"}}'


# Join a per-SLO ratio with its budget (both carry the sloth_* labels); the dashboard uses it too.
ON_SLO = "on (sloth_id, sloth_service, sloth_slo) group_left"


def sli_rules(spec: Spec) -> list[dict[str, Any]]:
    return [
        {
            "record": f"slo:sli_error:ratio_rate{window}",
            "expr": sli_expr(slo, window),
            "labels": {**_ids(spec, slo), "sloth_window": window},
        }
        for slo in spec.slos
        for window in spec.windows
    ]


def meta_rules(spec: Spec) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for slo in spec.slos:
        sel = _sel(spec, slo)
        per_budget = f"{sel}\n/ {ON_SLO} slo:error_budget:ratio{sel}"
        exprs = {
            "slo:objective:ratio": f"vector({slo.objective / 100:g})",
            "slo:error_budget:ratio": f"vector({slo.budget:g})",
            "slo:current_burn_rate:ratio": f"slo:sli_error:ratio_rate{spec.windows[0]}{per_budget}",
            "slo:period_burn_rate:ratio": f"slo:sli_error:ratio_rate{spec.period}{per_budget}",
            "slo:period_error_budget_remaining:ratio": f"1 - slo:period_burn_rate:ratio{sel}",
        }
        rules += [{"record": record, "expr": expr, "labels": _ids(spec, slo)} for record, expr in exprs.items()]
    return rules


def _burn_condition(spec: Spec, slo: Slo, pair: WindowPair) -> str:
    threshold = f"({pair.factor:g} * {slo.budget:g})"
    sel = _sel(spec, slo)
    # The window label differs between the two sides: drop it so `and` can match.
    return (
        f"(\n  max without (sloth_window) (slo:sli_error:ratio_rate{pair.long}{sel} > {threshold})\n"
        f"  and\n  max without (sloth_window) (slo:sli_error:ratio_rate{pair.short}{sel} > {threshold})\n)"
    )


def _spent_in(spec: Spec, factor: float) -> str:
    days = seconds(spec.period) / factor / 86400
    return f"{days * 24:.0f} hours" if days < 2 else f"{days:.0f} days"


def _alert(
    name: str, expr: str, labels: dict[str, str], summary: str, description: str, runbook: str, duration: str = ""
) -> dict[str, Any]:
    """An alert rule; `duration` is its `for`, how long the condition must hold."""
    timing = {"for": duration} if duration else {}
    annotations = {"summary": summary, "description": description, "runbook_url": RUNBOOK_BASE + runbook}
    return {"alert": name, "expr": expr, **timing, "labels": labels, "annotations": annotations}


def alert_rules(spec: Spec) -> list[dict[str, Any]]:
    rules = []
    for slo in spec.slos:
        for sev in spec.severities:
            suffix = "FastBurn" if sev.kind == "page" else "SlowBurn"
            pairs = " or ".join(f"{p.factor:g}x over {p.long} and {p.short}" for p in sev.pairs)
            description = (
                f"The {slo.name} SLO: {slo.description} Its error ratio is above the burn factor "
                f"times the {slo.budget * 100:g}% budget ({pairs}): at that rate the "
                f"{spec.period} error budget is spent in "
                f"{_spent_in(spec, max(p.factor for p in sev.pairs))} to "
                f"{_spent_in(spec, min(p.factor for p in sev.pairs))}."
            )
            rules.append(
                _alert(
                    f"{slo.alerting['name']}{suffix}",
                    "\nor\n".join(_burn_condition(spec, slo, p) for p in sev.pairs),
                    {"severity": sev.severity, "sloth_severity": sev.kind, **spec.labels},
                    f"{slo.alerting['summary']}: {slo.name} error budget burning ({sev.kind})",
                    description,
                    slo.alerting["runbook"],
                )
            )
    return rules


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # repeated label sets are written out, not as &id001 anchors


_Dumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None),
)


def dump(data: Any) -> str:
    """YAML as every generated file writes it: keys in order, multi-line strings as blocks."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=1000)


HEADER = (
    "# Generated by `python -m grafana` (make rules) from pipeline/performance/slos.yaml: do not edit.\n"
    "# Recording rules for each SLI's error ratio, its error budget and burn rates, and the\n"
    "# multiwindow, multi-burn-rate alerts. Tested by grafana/prometheus/tests/slo_test.yml.\n"
)


def render(spec: Spec | None = None) -> str:
    spec = spec or load()
    groups = [(SLI_GROUP, sli_rules), (META_GROUP, meta_rules), (ALERT_GROUP, alert_rules)]
    return HEADER + dump({"groups": [{"name": name, "rules": rules(spec)} for name, rules in groups]})


PERFORMANCE_OUTPUT = ROOT / "grafana" / "prometheus" / "performance.rules.yml"
COMPLIANCE_MAX = "embedding_pipeline:performance_slo_compliance:max"
# Beside the SLOs, for the performance dashboard: each stage's share of the workers' time (1 = every
# worker always in that stage) and its per-document p95.
STAGE_RULES = [
    {
        "record": "embedding_pipeline:stage_utilisation:ratio_rate5m",
        "expr": "sum by (stage) (rate(embedding_pipeline_stage_busy_seconds_total[5m]))\n"
        "  / on () group_left max(embedding_pipeline_workers_alive)\n",
    },
    {
        "record": "embedding_pipeline:stage_latency_seconds:p95_rate5m",
        "expr": "histogram_quantile(0.95, sum by (le, stage) (rate(embedding_pipeline_latency_seconds_bucket[5m])))",
    },
]
# A performance SLO with a `histogram` (search latency): the share of the last hour's observations of
# every pod within its target's bucket; no value without observations.
HISTOGRAM_COMPLIANCE = "embedding_pipeline:performance_slo_compliance:ratio_rate1h"
PERFORMANCE_HEADER = (
    "# Generated by `python -m grafana` from pipeline/performance/slos.yaml (performance_slos): do not edit.\n"
    "# The app exports each performance SLO's compliance at scrape time (pipeline.performance.compliance);\n"
    "# every replica exports the same value: max(), not sum(). An SLO with a histogram is judged from the\n"
    "# histogram's buckets summed over every pod instead. Thresholds and reasoning:\n"
    "# docs/performance.md#performance-slos; unit tests: tests/performance_test.yml.\n"
)


def _warning(alerting: dict[str, Any], expr: str, labels: dict[str, str]) -> dict[str, Any]:
    """A warning alert from a spec's `alerting` block (name, for, summary, description, runbook)."""
    texts = (alerting["summary"], alerting["description"], alerting["runbook"])
    return _alert(alerting["name"], expr, {"severity": "warning", **labels}, *texts, alerting["for"])


def render_performance(spec: Spec | None = None) -> str:
    spec = spec or load()
    alerts = [
        _warning(
            slo.alerting,
            f'{HISTOGRAM_COMPLIANCE if slo.histogram else COMPLIANCE_MAX}{{slo="{slo.name}"}} '
            f"< {slo.alerting['below']:g}",
            spec.labels,
        )
        for slo in spec.performance
    ]
    recording = [
        {"record": COMPLIANCE_MAX, "expr": "max by (slo) (performance_slo_compliance_embedding_pipeline_operations)"},
        *STAGE_RULES,
        *(
            {
                "record": HISTOGRAM_COMPLIANCE,
                "expr": f'sum(rate({slo.histogram}_bucket{{le="{slo.target:g}"}}[1h]))\n'
                f"  / (sum(rate({slo.histogram}_count[1h])) > 0)\n",
                "labels": {"slo": slo.name},
            }
            for slo in spec.performance
            if slo.histogram
        ),
    ]
    groups = [
        {"name": "embedding-pipeline-performance-recording", "rules": recording},
        {"name": "embedding-pipeline-performance", "rules": alerts},
    ]
    return PERFORMANCE_HEADER + dump({"groups": groups})


QUALITY_OUTPUT = ROOT / "grafana" / "prometheus" / "quality.rules.yml"
QUALITY_HEADER = (
    "# Generated by `python -m grafana` from pipeline/performance/slos.yaml (quality_slos): do not edit.\n"
    "# The app exports each collection's latest golden-query evaluation and its target at scrape time\n"
    "# (pipeline.quality.QualityCollector); every replica exports the same values: max(), not sum().\n"
    "# Unit tests: tests/quality_test.yml.\n"
)


def render_quality(path: Path = SPEC) -> str:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    labels = data.get("labels") or {}
    alerts = [
        _warning(
            raw["alerting"],
            f'max by (collection) (embedding_pipeline_retrieval_quality{{metric="{raw["metric"]}"}})\n'
            "  < on (collection) max by (collection) (embedding_pipeline_retrieval_target)",
            {"slo": raw["name"], **labels},
        )
        for raw in data.get("quality_slos") or ()
    ]
    return QUALITY_HEADER + dump({"groups": [{"name": "embedding-pipeline-quality", "rules": alerts}]})
