"""The operations test runner's fault provider is reachable by the workers, on its port only."""

from __future__ import annotations

import pytest

from tests.deploy.render import OVERLAY_NAMES, find, one, pod_contexts, render_overlay, selects

POLICY = "embedportal-ops-tests-fault-provider"


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_workers_reach_the_runner_pods_fault_provider_port_and_nothing_else(overlay: str) -> None:
    docs = render_overlay(overlay)
    spec = one(docs, "NetworkPolicy", POLICY)["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    (rule,) = spec["ingress"]
    assert [(p["port"], p["protocol"]) for p in rule["ports"]] == [(8089, "TCP")]
    pods = list(pod_contexts(docs))
    # The pods that run operations tests: the scheduled suites' CronWorkflows and the test runner
    # that executes requested and config-change runs.
    runners = [
        p
        for p in pods
        if p.owner.startswith("CronWorkflow/embedportal-ops-tests-") or p.owner == "Deployment/embedportal-test-runner"
    ]
    assert {p.owner for p in runners} == {
        "CronWorkflow/embedportal-ops-tests-quick",
        "CronWorkflow/embedportal-ops-tests-full",
        "Deployment/embedportal-test-runner",
    }
    # The policy selects exactly the runner pods...
    assert [p.owner for p in pods if selects(spec["podSelector"]["matchLabels"], p.labels)] == [
        p.owner for p in runners
    ]
    # ...whose provider listens on every address, on the opened port, advertised by the pod IP.
    for runner in runners:
        (container,) = runner.containers
        env = _env(container)
        assert env["EMBEDPORTAL_OPS_TEST_FAULT_HOST"]["value"] == "0.0.0.0"
        assert env["EMBEDPORTAL_OPS_TEST_FAULT_PORT"]["value"] == "8089"
        assert env["EMBEDPORTAL_OPS_TEST_FAULT_URL_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        assert [p["containerPort"] for p in container["ports"]] == [8089]
    # The peers are the worker pods and nobody else.
    peers = [peer["podSelector"]["matchLabels"] for peer in rule["from"]]
    assert all(set(p) == {"podSelector"} for p in rule["from"])
    allowed = [p.owner for p in pods if any(selects(s, p.labels) for s in peers)]
    assert allowed == [
        d for d in (f"Deployment/{x['metadata']['name']}" for x in find(docs, "Deployment")) if "worker" in d
    ]
