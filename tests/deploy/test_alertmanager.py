"""Alert routing: grafana/alertmanager/alertmanager.yml and its operator twin, the
AlertmanagerConfig in deploy/base/monitoring/, checked with amtool; the inhibitions against the rules."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from docs_site.generators import alerts
from tests.deploy.render import BASE, ROOT, one, render, render_overlay
from tests.tools import amtool

PLAIN = ROOT / "grafana" / "alertmanager" / "alertmanager.yml"
RULES = alerts.alert_rules(ROOT)
RECEIVER_BY_SEVERITY = {"critical": "page", "warning": "ticket"}


def _camel_to_snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def _matchers(matchers: list[dict[str, str]]) -> list[str]:
    return [f'{m["name"]}{m.get("matchType", "=")}"{m["value"]}"' for m in matchers]


def _plain_route(route: dict[str, Any]) -> dict[str, Any]:
    """An AlertmanagerConfig route in alertmanager.yml's spelling."""
    out = {_camel_to_snake(k): v for k, v in route.items() if k not in {"matchers", "routes"}}
    if "matchers" in route:
        out["matchers"] = _matchers(route["matchers"])
    if "routes" in route:
        out["routes"] = [_plain_route(r) for r in route["routes"]]
    return out


def operator_config_as_plain() -> dict[str, Any]:
    """The AlertmanagerConfig's routing and inhibition as an alertmanager.yml (receivers by name:
    the operator fills in their secrets)."""
    spec = one(render(BASE), "AlertmanagerConfig", "embedportal")["spec"]
    return {
        "route": _plain_route(spec["route"]),
        "inhibit_rules": [
            {
                "source_matchers": _matchers(rule["sourceMatch"]),
                "target_matchers": _matchers(rule["targetMatch"]),
                "equal": rule["equal"],
            }
            for rule in spec["inhibitRules"]
        ],
        "receivers": [{"name": r["name"]} for r in spec["receivers"]],
    }


def plain_config() -> dict[str, Any]:
    return yaml.safe_load(PLAIN.read_text())


@pytest.fixture(params=["alertmanager.yml", "AlertmanagerConfig"])
def config_file(request, tmp_path: Path) -> Path:
    if request.param == "alertmanager.yml":
        return PLAIN
    path = tmp_path / "operator.yml"
    path.write_text(yaml.safe_dump(operator_config_as_plain()))
    return path


def routed_to(config: Path, labels: dict[str, str]) -> list[str]:
    result = subprocess.run(
        [amtool(), "config", "routes", "test", f"--config.file={config}", *(f"{k}={v}" for k, v in labels.items())],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.split()


def test_amtool_accepts_both_configs(config_file: Path) -> None:
    result = subprocess.run([amtool(), "check-config", str(config_file)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alertmanagerconfig_routes_and_inhibits_like_the_plain_file() -> None:
    plain, operator = plain_config(), operator_config_as_plain()
    assert operator["route"] == plain["route"]
    assert operator["inhibit_rules"] == plain["inhibit_rules"]
    assert [r["name"] for r in operator["receivers"]] == [r["name"] for r in plain["receivers"]]


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_every_alert_of_the_rules_pages_or_tickets_its_team(rule: alerts.AlertRule, config_file: Path) -> None:
    labels = {"alertname": rule.name, **{k: str(v) for k, v in rule.labels.items()}}
    expected = f"{labels['team']}-{RECEIVER_BY_SEVERITY[labels['severity']]}"
    assert routed_to(config_file, labels) == [expected]


def test_an_alert_missing_team_or_severity_is_seen_in_unrouted(config_file: Path) -> None:
    assert routed_to(config_file, {"alertname": "X", "severity": "critical"}) == ["unrouted"]
    assert routed_to(config_file, {"alertname": "X", "team": "embedding-pipeline", "severity": "info"}) == ["unrouted"]


def test_the_target_down_alert_watches_the_jobs_the_monitors_create() -> None:
    """The operator names a ServiceMonitor's job after the Service, a PodMonitor's <namespace>/<name>."""
    docs = render_overlay("production")
    jobs = {m["metadata"]["name"] for m in docs if m["kind"] == "ServiceMonitor"} | {
        f"{m['metadata']['namespace']}/{m['metadata']['name']}" for m in docs if m["kind"] == "PodMonitor"
    }
    (rule,) = [r for r in RULES if r.name == "EmbeddingPipelineTargetDown"]
    (pattern,) = re.findall(r'job=~"([^"]+)"', rule.expr)
    assert set(pattern.split("|")) == jobs


# --- inhibition --------------------------------------------------------------------------------


def _matches(matchers: list[str], labels: dict[str, str]) -> bool:
    for matcher in matchers:
        name, op, value = re.fullmatch(r'(\w+)(=~|!~|!=|=)"(.*)"', matcher).groups()
        given = labels.get(name, "")
        ok = re.fullmatch(value, given) is not None if op in {"=~", "!~"} else given == value
        if ok == (op in {"!=", "!~"}):
            return False
    return True


def _alert_labels(rule: alerts.AlertRule) -> dict[str, str]:
    """The rule's labels, plus those its expression keeps (`by (job)`, the SLO's `sloth_id`)."""
    labels = {"alertname": rule.name, **{k: str(v) for k, v in rule.labels.items()}}
    if "by (job)" in rule.expr:
        labels["job"] = "embedportal-web"
    labels.update(dict(re.findall(r'(sloth_id)="([^"]+)"', rule.expr)))
    return labels


def test_every_inhibition_names_real_causes_and_symptoms_sharing_its_equal_labels() -> None:
    """A renamed alert or a label the cause does not carry would leave an inhibition dead, silently."""
    labelled = [_alert_labels(r) for r in RULES]
    for rule in plain_config()["inhibit_rules"]:
        sources = [a for a in labelled if _matches(rule["source_matchers"], a)]
        targets = [a for a in labelled if _matches(rule["target_matchers"], a)]
        assert sources and targets, rule
        assert all(all(a.get(label) for label in rule["equal"]) for a in sources), rule
        # Each cause mutes something of its own (same `equal` labels), never itself.
        for source in sources:
            muted = [t for t in targets if t is not source and all(t.get(k) == source[k] for k in rule["equal"])]
            assert muted, (rule, source["alertname"])


def test_target_down_mutes_the_rest_of_the_team_and_a_fast_burn_only_its_own_slow_burn() -> None:
    plain = plain_config()["inhibit_rules"]

    def muted_by(cause: dict[str, str], symptom: dict[str, str]) -> bool:
        return any(
            _matches(r["source_matchers"], cause)
            and _matches(r["target_matchers"], symptom)
            and all(cause.get(k) == symptom.get(k) for k in r["equal"])
            for r in plain
        )

    by_name = {r.name: _alert_labels(r) for r in RULES}
    down = by_name["EmbeddingPipelineTargetDown"]
    assert muted_by(down, by_name["EmbeddingPipelineQueueGrowing"])
    assert muted_by(down, by_name["EmbeddingPipelineFreshnessFastBurn"])
    assert not muted_by(down, down)
    assert not muted_by(down, {"alertname": "Other", "team": "search", "severity": "warning"})
    fast = by_name["EmbeddingPipelineLatencyFastBurn"]
    assert muted_by(fast, by_name["EmbeddingPipelineLatencySlowBurn"])
    assert not muted_by(fast, by_name["EmbeddingPipelineFreshnessSlowBurn"])
    # A critical without an SLO (no sloth_id) mutes no warning through the SLO rule.
    assert not muted_by(by_name["EmbeddingPipelineDimensionMismatch"], by_name["EmbeddingPipelineQueueGrowing"])
