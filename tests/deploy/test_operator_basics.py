"""What an operator expects beyond the seed (issue 22): database backups in production, an HTTPS
Ingress, the web port open only to the ingress controller and Prometheus, /metrics scraped with
a token."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.deploy import validators
from tests.deploy.render import DEPLOY, OVERLAY_NAMES, PodContext, one, pod_contexts, render_overlay
from tests.deploy.test_manifests import _env_sources, _mounted_secret_files

COMPONENT = DEPLOY / "components" / "cnpg-backup"
INGRESS_NAMESPACE = "ingress-nginx"
PROMETHEUS_NAMESPACE = "monitoring"


def _web_container(docs: list[dict[str, Any]]) -> tuple[PodContext, dict[str, Any]]:
    (pod,) = [p for p in pod_contexts(docs) if p.owner == "Deployment/embedportal-web"]
    return pod, pod.containers[0]


# --- backups -------------------------------------------------------------------------------------


def test_production_archives_wal_and_takes_nightly_base_backups_to_its_own_bucket() -> None:
    docs = render_overlay("production")
    backup = one(docs, "Cluster", "embedportal-db")["spec"]["backup"]
    store = backup["barmanObjectStore"]
    placeholder = yaml.safe_load((COMPONENT / "cluster-backup.yaml").read_text())["spec"]["backup"]
    # The overlay, not the shared component, says where this environment's backups go.
    assert store["destinationPath"] != placeholder["barmanObjectStore"]["destinationPath"]
    assert re.fullmatch(r"s3://[a-z0-9.-]+/production", store["destinationPath"])
    assert re.fullmatch(validators.CNPG_RETENTION, backup["retentionPolicy"])
    assert store["wal"]["compression"] and store["data"]["compression"]
    assert {c["name"] for c in store["s3Credentials"].values()} == {"embedportal-db-backup"}

    scheduled = one(docs, "ScheduledBackup", "embedportal-db-nightly")["spec"]
    assert scheduled["cluster"]["name"] == "embedportal-db" and scheduled["method"] == "barmanObjectStore"
    assert scheduled["schedule"].split()[:3] == ["0", "0", "2"]  # 02:00:00, daily
    assert scheduled["backupOwnerReference"] == "self"


@pytest.mark.parametrize("overlay", ["vcluster", "statefulset-pgvector"])
def test_test_clusters_take_no_object_store_backups(overlay: str) -> None:
    docs = render_overlay(overlay)
    assert not [d for d in docs if d["kind"] == "ScheduledBackup"]
    assert all("backup" not in d["spec"] for d in docs if d["kind"] == "Cluster")


def test_the_backup_validators_reject_a_five_field_schedule_and_a_bad_retention() -> None:
    docs = render_overlay("production")
    scheduled = one(docs, "ScheduledBackup", "embedportal-db-nightly")
    cluster = one(docs, "Cluster", "embedportal-db")
    validators.validate(scheduled)
    validators.validate(cluster)
    with pytest.raises(validators.ManifestError, match="six fields"):
        validators.validate({**scheduled, "spec": {**scheduled["spec"], "schedule": "0 2 * * *"}})
    with pytest.raises(validators.ManifestError, match="not a documented field"):
        validators.validate({**scheduled, "spec": {**scheduled["spec"], "clusterName": "x"}})
    bad = {**cluster["spec"]["backup"], "retentionPolicy": "30 days"}
    with pytest.raises(validators.ManifestError, match="retentionPolicy"):
        validators.validate({**cluster, "spec": {**cluster["spec"], "backup": bad}})
    misspelt = {**cluster["spec"]["backup"], "barmanObjectStore": {"destinationpath": "s3://x"}}
    with pytest.raises(validators.ManifestError, match="destinationpath"):
        validators.validate({**cluster, "spec": {**cluster["spec"], "backup": misspelt}})


# --- exposure ------------------------------------------------------------------------------------


def test_production_serves_the_allowed_host_over_tls_from_cert_manager() -> None:
    docs = render_overlay("production")
    ingress = one(docs, "Ingress", "embedportal-web")
    config = one(docs, "ConfigMap", "embedportal-config")["data"]
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"]
    hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
    assert hosts == {h for tls in ingress["spec"]["tls"] for h in tls["hosts"]}
    assert all(tls["secretName"] for tls in ingress["spec"]["tls"])
    for host in hosts:
        assert host in config["DJANGO_ALLOWED_HOSTS"].split(",")
        assert f"https://{host}" in config["DJANGO_CSRF_TRUSTED_ORIGINS"].split(",")
    service = one(docs, "Service", "embedportal-web")
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_the_web_port_admits_only_the_ingress_controller_and_prometheus(overlay: str) -> None:
    policy = one(render_overlay(overlay), "NetworkPolicy", "embedportal-web")["spec"]
    peers = [peer for rule in policy["ingress"] for peer in rule.get("from", [None])]
    assert None not in peers, "a rule without `from` admits everyone"
    assert [p["namespaceSelector"]["matchLabels"] for p in peers] == [
        {"kubernetes.io/metadata.name": INGRESS_NAMESPACE},
        {"kubernetes.io/metadata.name": PROMETHEUS_NAMESPACE},
    ]
    assert all(set(p) == {"namespaceSelector"} for p in peers)


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_the_servicemonitor_sends_the_token_the_web_pods_read(overlay: str) -> None:
    docs = render_overlay(overlay)
    (endpoint,) = one(docs, "ServiceMonitor", "embedportal-web")["spec"]["endpoints"]
    auth = endpoint["authorization"]
    assert auth["type"] == "Bearer"
    pod, web = _web_container(docs)
    token_file = _env_sources(docs, web)["EMBEDPORTAL_METRICS_TOKEN_FILE"]
    assert _mounted_secret_files(pod, web)[token_file] == (auth["credentials"]["name"], auth["credentials"]["key"])
