"""The operations-test rules: valid, unit-tested with promtool, and reading only metrics /metrics has."""

from __future__ import annotations

import yaml

from testing.collectors import DatabaseCollector
from testing.scenarios.integration import metric_names
from tests.tools import RULES


def test_rules_read_only_metrics_the_collector_exports():
    exported = set()
    for family in DatabaseCollector().describe():
        exported |= {family.name, f"{family.name}_total", f"{family.name}_bucket"}
    groups = yaml.safe_load((RULES / "ops-tests.rules.yml").read_text())["groups"]
    read = {n for g in groups for r in g["rules"] for n in metric_names(r["expr"])}
    assert read and read <= exported, read - exported
