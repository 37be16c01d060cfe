"""The SLO and capacity rules: generated from one spec, valid for Prometheus, and unit-tested with promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from grafana import slo_rules as slo
from tests.tools import promtool, run_promtool

RULES = slo.OUTPUT.parent
RULE_FILES = sorted(p.name for p in RULES.glob("*.rules.yml"))
OURS = ("slo.rules.yml", "capacity.rules.yml")


def rules(name: str) -> list[dict]:
    return [rule for group in yaml.safe_load((RULES / name).read_text())["groups"] for rule in group["rules"]]


def test_committed_slo_rules_equal_a_fresh_generation_from_the_spec():
    assert slo.OUTPUT.read_text(encoding="utf-8") == slo.render(), "run: make rules"


def test_every_rule_file_loads_together_without_duplicate_groups():
    # Prometheus loads them all (and the PrometheusRule puts every group in one file).
    result = run_promtool("check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    names = [g["name"] for f in RULE_FILES for g in yaml.safe_load((RULES / f).read_text())["groups"]]
    assert len(names) == len(set(names))


def test_each_sli_is_recorded_over_exactly_the_alert_windows_and_the_period():
    spec = slo.load()
    recorded = {
        (r["labels"]["sloth_slo"], r["record"]) for r in rules("slo.rules.yml") if "sloth_window" in r.get("labels", {})
    }
    windows = ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"]
    assert recorded == {(s.name, f"slo:sli_error:ratio_rate{w}") for s in spec.slos for w in windows}
    assert [s.name for s in spec.slos] == ["freshness", "failures", "latency"]
    assert {s.name: s.budget for s in spec.slos} == {"freshness": 0.01, "failures": 0.001, "latency": 0.05}


def test_each_slo_has_a_page_and_a_ticket_alert_over_the_workbook_windows():
    alerts = {r["alert"]: r for r in rules("slo.rules.yml") if "alert" in r}
    for name in ("Freshness", "Failures", "Latency"):
        page, ticket = alerts[f"EmbeddingPipeline{name}FastBurn"], alerts[f"EmbeddingPipeline{name}SlowBurn"]
        assert (page["labels"]["severity"], ticket["labels"]["severity"]) == ("critical", "warning")
        pairs = lambda rule: re.findall(r"ratio_rate(\w+)\{[^}]*\} > \(([\d.]+) \*", rule["expr"])  # noqa: E731
        assert pairs(page) == [("1h", "14.4"), ("5m", "14.4"), ("6h", "6"), ("30m", "6")]
        assert pairs(ticket) == [("1d", "3"), ("2h", "3"), ("3d", "1"), ("6h", "1")]


@pytest.mark.parametrize("name", OURS)
def test_alerts_follow_the_naming_and_annotation_conventions(name):
    alerts = [r for r in rules(name) if "alert" in r]
    assert alerts
    for rule in alerts:
        assert re.fullmatch(r"EmbeddingPipeline(?:[A-Z][a-z]+)+", rule["alert"]), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
        assert re.fullmatch(
            r"https://embedportal\.example/docs/runbooks/[a-z-]+/#[a-z-]+", rule["annotations"]["runbook_url"]
        )


def test_the_capacity_alerts_read_the_gauges_the_capacity_measurement_exports():
    exprs = " ".join(r["expr"] for r in rules("capacity.rules.yml"))
    assert "embedding_pipeline_capacity_docs_per_second" in exprs
    assert "embedding_pipeline_capacity_measured_timestamp_seconds" in exprs
    assert {r["alert"] for r in rules("capacity.rules.yml") if "alert" in r} == {
        "EmbeddingPipelineQueueGrowing",
        "EmbeddingPipelineCapacityExhaustionProjected",
        "EmbeddingPipelineCapacityMeasurementStale",
        "EmbeddingPipelineCapacityNeverMeasured",
    }


def _spec(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(slo.SPEC.read_text())
    edit(data)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_spec_errors_say_what_to_fix(tmp_path):
    def no_window(d):
        d["slos"][0]["sli"]["events"]["total_query"] = "sum(rate(x[5m]))"

    def bad_window(d):
        d["burn_rate_alerts"]["page"]["windows"][0]["long"] = "1 hour"

    def short_not_shorter(d):
        d["burn_rate_alerts"]["page"]["windows"][0]["short"] = "2h"

    def bad_objective(d):
        d["slos"][0]["objective"] = 100

    for edit, message in [
        (no_window, "no \\[\\{\\{.window\\}\\}\\] range"),
        (bad_window, "write it as"),
        (short_not_shorter, "must be shorter"),
        (bad_objective, "between 0 and 100"),
    ]:
        with pytest.raises(slo.SpecError, match=message):
            slo.load(_spec(tmp_path, edit))


# The freshness SLI before it was judged per collection: the lag histogram's global 1 h bucket.
GLOBAL_HOUR = {
    "error_query": "sum(rate(embedding_pipeline_freshness_lag_seconds_count[{{.window}}])) - "
    'sum(rate(embedding_pipeline_freshness_lag_seconds_bucket{le=~"3600(\\\\.0)?"}[{{.window}}]))',
    "total_query": "sum(rate(embedding_pipeline_freshness_lag_seconds_count[{{.window}}]))",
}


@pytest.mark.parametrize("test_file", ["slo_test.yml", "slo_slow_burn_test.yml"])
def test_the_freshness_unit_tests_fail_against_the_global_hour_query(tmp_path, test_file):
    # The same spec but the freshness queries of old: the documents the unit tests judge late
    # against their collection's SLA all sit in the histogram's hour, so no ratio or alert matches.
    spec = _spec(tmp_path, lambda d: d["slos"][0]["sli"]["events"].update(GLOBAL_HOUR))
    (tmp_path / "slo.rules.yml").write_text(slo.render(slo.load(spec)))
    (tmp_path / "tests").mkdir()
    shutil.copy(RULES / "tests" / test_file, tmp_path / "tests")
    result = subprocess.run(
        [promtool(), "test", "rules", f"tests/{test_file}"], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 1 and "alertname: EmbeddingPipelineFreshness" in result.stdout + result.stderr
