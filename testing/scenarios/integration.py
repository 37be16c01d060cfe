"""Integration: upstream (producers' contracts, the model) and downstream (the index, /metrics, rules, health)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from django.conf import settings
from django.core.management.base import CommandError
from django.db import connection
from django.utils.module_loading import import_string

from pipeline import storage
from pipeline.collections import resolve_dimensions
from pipeline.embedding import embed_texts
from pipeline.models import RESERVED_PREFIX, Collection, Document
from testing.benchmarks.search import explain
from testing.choices import Category, Component, Condition
from testing.context import Context
from testing.registry import scenario
from testing.scenarios.shared import enqueue_jsonl, scrape

N, E = Condition.NORMAL, Condition.EDGE


def integration(name: str, component: str, condition: str, **options: Any) -> Any:
    """Register an integration scenario: each exercises its own component under one condition."""
    return scenario(name, Category.INTEGRATION, component, covers=[(component, condition)], **options)


@integration("producer_api_contract", Component.ENQUEUE, N, quick=True)
def api_contract(ctx: Context) -> None:
    """Producers' API: 202 with accepted/created/updated/unchanged; document fields; one error body shape."""
    collection = ctx.collection("contract")
    first = ctx.post(collection, [{"id": "p1", "text": "producer contract", "metadata": {"source": "ops"}}])
    ctx.expect(first, 202, "enqueue")
    body = first.json()
    ctx.check(
        set(body) >= {"accepted", "created", "updated", "unchanged"} and body["created"] == ["p1"],
        f"enqueue body {body}",
    )
    listed = ctx.client().get(f"/api/v1/collections/{collection.name}/documents/")
    ctx.expect(listed, 200, "listing documents")
    row = listed.json()["results"][0]
    wanted = {"id", "collection", "content_hash", "metadata", "status", "attempts", "last_error", "last_embedded_at"}
    ctx.check(wanted <= set(row), f"document fields lack {sorted(wanted - set(row))}")
    bad = ctx.post(collection, {"id": "p2"})
    error = bad.json().get("error", {})
    ctx.check(
        bad.status_code == 400 and {"status", "message", "details"} <= set(error),
        f"a bad document answered {bad.status_code} {bad.json()}",
    )
    unknown = ctx.post(Collection(name="__no_such_collection__"), {"id": "x", "text": "y"})
    ctx.expect(unknown, 404, "an unknown collection")


@integration("producer_cli_contract", Component.ENQUEUE, E, quick=True)
def cli_contract(ctx: Context) -> None:
    """The enqueue command takes the good lines of a JSONL file and fails naming the bad ones."""
    collection = ctx.collection("clicontract")
    try:
        enqueue_jsonl(collection, [{"id": "good", "text": "a good line"}, "{not json", {"id": "empty", "text": ""}])
    except CommandError as exc:
        ctx.check("2 document(s) rejected" in str(exc), f"the command failed with: {exc}")
    else:
        ctx.fail("the command succeeded although two lines are invalid")
    ids = list(Document.objects.filter(collection=collection).values_list("external_id", flat=True))
    ctx.check(ids == ["good"], f"documents written: {ids}")


@integration("model_upstream_answers", Component.EMBED, N, quick=True, per_collection=True)
def model_answers(ctx: Context) -> dict[str, Any]:
    """The embedding model (the default, or the target collection's) returns finite vectors of the right size."""
    if ctx.target:
        probe = Collection.objects.get(name=ctx.target)
    else:
        probe = Collection(model=settings.EMBEDPORTAL_DEFAULT_MODEL)
        probe.dimensions = resolve_dimensions(probe)
    try:
        vectors = embed_texts(probe, ["operations probe one", "operations probe two"])
    except Exception as exc:  # noqa: BLE001 -- the cause is the message
        ctx.fail(f"{probe.model} failed: {exc}")
    ctx.check(vectors.shape == (2, probe.dimensions), f"{probe.model} returned shape {vectors.shape}")
    return {"model": probe.model, "dimensions": probe.dimensions}


@integration("search_uses_hnsw_index", Component.SEARCH, N, quick=True, per_collection=True)
def hnsw_index(ctx: Context) -> dict[str, Any]:
    """Every collection has its HNSW index, and the search query is planned on it (EXPLAIN)."""
    collections = Collection.objects.exclude(name__startswith=RESERVED_PREFIX)
    if ctx.target:
        collections = Collection.objects.filter(name=ctx.target)
    # The collections before the indexes: a first load finishing (its index built and the load cleared in
    # one transaction) between a read of the indexes and one of the collections was a missing index.
    collections = list(collections)
    with connection.cursor() as cur:
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'pipeline_chunk'")
        indexes = dict(cur.fetchall())
    # A first load is written without the index, built once it is complete (pipeline.backfill).
    loading = {c.pk for c in collections if c.building_generation is not None and c.building_generation == c.generation}
    missing = [
        f"{c.name} ({c.index_name})"
        for c in collections
        if c.pk not in loading and "hnsw" not in indexes.get(c.index_name, "")
    ]
    ctx.check(
        not missing, f"collection(s) without their HNSW index: {', '.join(missing)}; search falls back to a full scan"
    )
    probe = Collection.objects.get(name=ctx.target) if ctx.target else ctx.collection("hnsw")
    if probe.pk in loading:
        # A new collection's configuration-change run comes while its first load is written: its search
        # scans exactly until the load completes (a drill's run failed here on every big first load).
        ctx.skip(f"{probe.name} is in its first load: its HNSW index is built when the load completes")
    # Scans and sorts avoided: they are cheaper on a small collection, but the index must serve the query.
    avoid = [f"SET LOCAL {knob} = off" for knob in ("enable_seqscan", "enable_bitmapscan", "enable_sort")]
    vector = np.ones(probe.dimensions, dtype=np.float32)
    plan = explain(lambda: storage.nearest(probe, vector, 3), *avoid)
    ctx.check(
        f"Index Scan using {probe.index_name}" in plan,
        f"the search query for {probe.name} is not planned on its HNSW index {probe.index_name}:\n{plan}",
    )
    return {"collections_checked": len(collections), "first_loads_without_index_yet": len(loading)}


# PromQL words that look like metric names.
PROMQL_WORDS = set(
    """
    and or unless by without on ignoring group_left group_right bool offset sum
    min max avg count stddev stdvar topk bottomk quantile count_values inf nan
    """.split()
)
OUR_PREFIXES = ("embedding_pipeline_", "pipeline_", "test_", "documentation_", "performance_")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads (label matchers, strings, functions and grouping left out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"#[^\n]*", "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    words = re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", expr)
    return {
        name
        for name, call in words
        if not (call or name in PROMQL_WORDS or ":" in name or re.fullmatch(r"\d+[smhdwy]", name))
    }


def referenced_metrics() -> dict[str, set[str]]:
    """Our metric names read by the Prometheus rules and the Grafana dashboards in the repository, by file."""
    root = Path(settings.BASE_DIR)
    found: dict[str, set[str]] = {}
    for path in [*sorted((root / "grafana").rglob("*.rules.yml")), root / "deploy/base/monitoring/prometheusrule.yaml"]:
        if not path.exists():
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            groups = (doc or {}).get("groups") or (doc or {}).get("spec", {}).get("groups") or []
            exprs = [rule["expr"] for group in groups for rule in group.get("rules", [])]
            found[str(path.relative_to(root))] = {n for e in exprs for n in metric_names(str(e))}
    for path in sorted((root / "grafana").rglob("*.json")):
        exprs = re.findall(r'"expr"\s*:\s*"((?:[^"\\]|\\.)*)"', path.read_text())
        found[str(path.relative_to(root))] = {n for e in exprs for n in metric_names(json.loads(f'"{e}"'))}
    return {f: {n for n in names if n.startswith(OUR_PREFIXES)} for f, names in found.items()}


@integration("metrics_used_by_rules_and_dashboards_exist", Component.METRICS, E, quick=True)
def metrics_used(ctx: Context) -> dict[str, Any]:
    """/metrics parses, and every metric of ours that an alert, recording rule or dashboard reads is on it
    (or declared by a scrape-time collector that has no sample yet, e.g. no capacity measurement)."""
    families = scrape(ctx)
    exposed = series_names(families.values())
    with_samples = series_names(f for f in families.values() if f.samples)
    # A database gauge has no sample while it has no value: the rules read it with absent() or `or`.
    collectors = [import_string(path)() for path in settings.EMBEDPORTAL_METRICS_COLLECTORS]
    declared = series_names(f for c in collectors if hasattr(c, "describe") for f in c.describe())
    referenced = referenced_metrics()
    ctx.check(referenced, "no Prometheus rules or dashboards found beside the code (grafana/, deploy/)")
    missing = sorted(
        f"{name} (in {file})"
        for file, names in referenced.items()
        for name in names
        if name not in exposed and name not in declared
    )
    ctx.check(not missing, f"read by rules or dashboards but absent from /metrics: {', '.join(missing)}")
    metrics = set().union(*referenced.values())
    without_samples = sorted(metrics - with_samples)
    return {"files": len(referenced), "metrics": len(metrics), "declared_without_samples": without_samples}


def series_names(families: Any) -> set[str]:
    names = set()
    for family in families:
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        # A family with no samples yet still names its series.
        names.update(f"{family.name}{suffix}" for suffix in ("_total", "_bucket", "_count", "_sum", "_created"))
    return names


@integration("health_endpoints_answer", Component.HEALTH, E, quick=True)
def health_endpoints(ctx: Context) -> None:
    """/healthz and /readyz answer 200 and /api/v1/health/ answers with its three named checks."""
    client = ctx.client()
    for path in ("/healthz", "/readyz"):
        response = client.get(path)
        ctx.check(response.status_code == 200, f"{path} answered {response.status_code}: {response.content[:200]!r}")
    response = client.get("/api/v1/health/")
    ctx.check(response.status_code in (200, 503), f"/api/v1/health/ answered {response.status_code}")
    names = [c["name"] for c in response.json()["checks"]]
    ctx.check(names == ["model", "pgvector", "queue"], f"/api/v1/health/ checks are {names}")
