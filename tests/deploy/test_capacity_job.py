"""The capacity Job and the scratch database in every overlay: one pod measured as the workers run,
beside production, times the replicas the autoscaler may run."""

from __future__ import annotations

import pytest

from tests.deploy.render import OVERLAY_NAMES, find, one, render_overlay


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_the_capacity_replicas_setting_is_the_scaled_objects_maximum(overlay: str) -> None:
    docs = render_overlay(overlay)
    config = one(docs, "ConfigMap", "embedportal-config")["data"]
    scaled = one(docs, "ScaledObject", "embedportal-worker")["spec"]
    assert int(config["EMBEDPORTAL_MAX_WORKER_REPLICAS"]) == scaled["maxReplicaCount"]
    if overlay == "production":
        assert scaled["maxReplicaCount"] == 10


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_the_capacity_job_waits_to_be_run_and_measures_a_worker_pods_resources(overlay: str) -> None:
    docs = render_overlay(overlay)
    job = one(docs, "Job", "embedportal-measure-capacity")["spec"]
    assert job["suspend"] is True and job["template"]["spec"]["restartPolicy"] == "Never"
    [container] = job["template"]["spec"]["containers"]
    assert container["args"] == ["measure_capacity"]
    worker = one(docs, "Deployment", "embedportal-worker")["spec"]["template"]["spec"]["containers"]
    qcluster = next(c for c in worker if c["name"] == "qcluster")
    assert container["resources"] == qcluster["resources"]
    assert container["envFrom"] == qcluster["envFrom"]


@pytest.mark.parametrize("overlay", ["vcluster", "production"])
def test_cloudnativepg_declares_the_scratch_database_with_pgvector(overlay: str) -> None:
    docs = render_overlay(overlay)
    initdb = one(docs, "Cluster", "embedportal-db")["spec"]["bootstrap"]["initdb"]
    spec = one(docs, "Database", "embedportal-db-scratch")["spec"]
    # embedportal.scratch.name(): the app database's name + "_scratch".
    assert spec["name"] == f"{initdb['database']}_scratch" and spec["owner"] == initdb["owner"]
    assert spec["cluster"] == {"name": "embedportal-db"}
    assert {"name": "vector", "ensure": "present"} in spec["extensions"]


def test_the_statefulset_flavour_has_no_cloudnativepg_database() -> None:
    # Its app role is the image's superuser: the app creates the scratch database itself.
    assert not find(render_overlay("statefulset-pgvector"), "Database")
