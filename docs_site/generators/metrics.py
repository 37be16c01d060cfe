"""Metrics reference: our metric families from the prometheus_client registry and from the scrape-time
collectors (EMBEDPORTAL_METRICS_COLLECTORS), with type, labels and HELP."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from docs_site.generators.base import PROJECT_APPS, GeneratedPage, table

PATH = "reference/metrics.md"
# Other exporters' families (django-prometheus, the client's process and platform collectors) are
# theirs to document; every other family on /metrics is ours (the test_* and performance_* ones too).
FOREIGN_METRIC_PREFIXES = ("django_", "process_", "python_")


@dataclass(frozen=True)
class MetricInfo:
    name: str  # as exposed (counters with _total)
    type: str
    labels: tuple[str, ...]
    help: str
    origin: str  # "process" (recorded by each process) or the collector's dotted path


def _info(name: str, kind: str, labels: Any, help: str, origin: str) -> MetricInfo:
    return MetricInfo(f"{name}_total" if kind == "counter" else name, kind, tuple(labels), help, origin)


def app_metrics() -> tuple[list[MetricInfo], list[str]]:
    """Every metric family of ours the registry and the collectors know, sorted by name."""
    missing: list[str] = []
    for app in PROJECT_APPS:
        if importlib.util.find_spec(f"{app}.metrics") is not None:
            importlib.import_module(f"{app}.metrics")
    infos = [
        _info(c._name, c._type, c._labelnames, c._documentation, "process")
        for c in list(REGISTRY._collector_to_names)
        if isinstance(c, MetricWrapperBase)
    ]
    for path in settings.EMBEDPORTAL_METRICS_COLLECTORS:
        try:
            families = list(import_string(path)().describe())
        except Exception as exc:  # noqa: BLE001  (one broken collector must not hide the others)
            missing.append(f"collector {path}: {exc.__class__.__name__}: {exc}")
            continue
        infos += [_info(f.name, f.type, getattr(f, "_labelnames", ()), f.documentation, path) for f in families]
    found = {m.name: m for m in infos}
    ours = [m for m in found.values() if not m.name.startswith(FOREIGN_METRIC_PREFIXES)]
    return sorted(ours, key=lambda m: m.name), missing


def generate(live: bool = False) -> GeneratedPage:
    metrics, missing = app_metrics()
    rows = [
        [
            f"`{m.name}`",
            m.type,
            ", ".join(f"`{label}`" for label in m.labels),
            m.help,
            "each process" if m.origin == "process" else "scrape time",
        ]
        for m in metrics
    ]
    body = "\n\n".join(
        [
            "The metric families embedportal exports on `/metrics`. *Each process* metrics are "
            "recorded where the work happens (summed across processes in multiprocess mode); "
            "*scrape time* gauges are computed from the database when Prometheus scrapes, so every "
            "replica reports the same value (aggregate them with `max`, not `sum`). Histograms "
            "expose `_bucket`, `_sum` and `_count` series.",
            table(["metric", "type", "labels", "help", "recorded"], rows),
        ]
    )
    sources = ["*/metrics.py", "embedportal/config.py", "embedportal/config_operations.py"]
    return GeneratedPage(PATH, "Metrics reference", __name__, rows, body, sources, missing=missing)
