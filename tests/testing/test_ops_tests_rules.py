"""The operations-test rules: valid, unit-tested with promtool, and reading only metrics /metrics has."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from testing.collectors import DatabaseCollector
from testing.scenarios.integration import metric_names
from tests.tools import promtool

RULES = Path(__file__).resolve().parents[2] / "grafana" / "prometheus"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, cwd=RULES, timeout=120)


def test_rules_pass_promtool_check_with_lint_fatal():
    result = run("check", "rules", "--lint-fatal", "ops-tests.rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_pass_their_promtool_unit_tests():
    result = run("test", "rules", "tests/ops-tests_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_read_only_metrics_the_collector_exports():
    exported = set()
    for family in DatabaseCollector().describe():
        exported |= {family.name, f"{family.name}_total", f"{family.name}_bucket"}
    groups = yaml.safe_load((RULES / "ops-tests.rules.yml").read_text())["groups"]
    read = {n for g in groups for r in g["rules"] for n in metric_names(r["expr"])}
    assert read and read <= exported, read - exported
