"""Regression: recall@k and MRR against the last passing run (notes: docs/ops-tests.md, "Module notes")."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings

from pipeline import quality
from pipeline.models import RESERVED_PREFIX, Collection, GoldenQuery
from pipeline.search import search
from testing import golden
from testing.choices import Category, Component, Condition
from testing.context import Context
from testing.fingerprints import collection_config
from testing.models import GOOD, TestResult
from testing.registry import scenario

K = 5
# The built-in golden set's collection without a target: the default model, token chunks.
DEFAULT_CONFIG = {"chunk_unit": "tokens", "chunk_size": 256, "chunk_overlap": 32, "dimensions": None}
# Ranks beyond this count as not found for MRR.
MRR_DEPTH = 10


def ranked(
    ctx: Context, collection: Collection, queries: Iterable[tuple[str, str]]
) -> tuple[list[int | None], list[str]]:
    """Each (query, expected document id) pair's rank (None: past MRR_DEPTH), and the misses; an error fails."""
    ranks: list[int | None] = []
    misses = []
    for query, expected in queries:
        try:
            hits = search(collection, query, MRR_DEPTH * 3)
        except Exception as exc:  # noqa: BLE001 -- the error is the result
            ctx.fail(f"golden query {query!r} on {collection.name} errored: {exc}")
        documents = list(dict.fromkeys(h.document_id for h in hits))[:MRR_DEPTH]
        rank = documents.index(expected) + 1 if expected in documents else None
        ranks.append(rank)
        if rank is None or rank > K:
            misses.append(f"{query!r} -> {expected} (rank {rank or f'>{MRR_DEPTH}'})")
    return ranks, misses


def evaluate(ranks: list[int | None], misses: list[str]) -> dict[str, Any]:
    """recall@K and MRR@MRR_DEPTH of the ranks."""
    n = len(ranks) or 1
    return {
        "queries": len(ranks),
        "recall_at_k": sum(1 for r in ranks if r is not None and r <= K) / n,
        "mrr": sum(1 / r for r in ranks if r is not None) / n,
        "k": K,
        "misses": misses[:20],
    }


def compare(ctx: Context, measured: dict[str, Any]) -> dict[str, Any]:
    """Fail on a drop past the tolerance below the last passing run of this scenario on this target."""
    tolerance = settings.EMBEDPORTAL_OPS_TEST_REGRESSION_TOLERANCE
    passing = TestResult.objects.filter(scenario=ctx.scenario.name, target=ctx.target, outcome__in=GOOD)
    last = passing.order_by("-started_at", "-id").values("details", "run_id").first()
    if last and "recall_at_k" in last["details"]:
        base = {**last["details"], "run": last["run_id"]}
        measured["baseline"] = {"run": base["run"], "recall_at_k": base["recall_at_k"], "mrr": base["mrr"]}
        for name in ("recall_at_k", "mrr"):
            if measured[name] < base[name] - tolerance:
                ctx.fail(
                    f"{name} {measured[name]:.3f} dropped below the last passing run's {base[name]:.3f} "
                    f"(run {base['run']}) by more than the tolerance {tolerance:g}; "
                    f"missed: {'; '.join(measured['misses'][:5])}"
                )
    return measured


def regression(name: str, covers: list[tuple[str, str]]) -> Any:
    """Register a retrieval-quality scenario (on the target collection in a configuration-change run)."""
    return scenario(name, Category.REGRESSION, Component.SEARCH, covers=covers, timeout=300, per_collection=True)


@regression(
    "regression_builtin_golden_set",
    [(c, Condition.NORMAL) for c in (Component.CHUNK, Component.EMBED, Component.SEARCH)],
)
def builtin_golden_set(ctx: Context) -> dict[str, Any]:
    """The built-in golden set's recall@5 and MRR with the configuration under test did not drop."""
    if ctx.target:
        config = collection_config(Collection.objects.get(name=ctx.target))
    else:
        config = {**DEFAULT_CONFIG, "model": settings.EMBEDPORTAL_DEFAULT_MODEL}
    collection = ctx.collection("golden", **config)
    ctx.enqueue(collection, golden.CORPUS.items())
    ctx.wait_documents(collection, timeout=240)
    measured = evaluate(*ranked(ctx, collection, golden.QUERIES))
    measured["model"] = collection.model
    return compare(ctx, measured)


@regression("regression_operator_golden_queries", [(Component.SEARCH, Condition.EDGE)])
def operator_golden_queries(ctx: Context) -> dict[str, Any]:
    """Operators' golden queries still find their documents (recall@5, MRR vs the last passing run), and
    no collection's latest configuration change lowered them (its evaluations before and after)."""
    queries = GoldenQuery.objects.exclude(collection__name__startswith=RESERVED_PREFIX).select_related("collection")
    if ctx.target:
        queries = queries.filter(collection__name=ctx.target)
    by_collection: dict[Collection, list[tuple[str, str]]] = {}
    for q in queries.order_by("collection__name", "id"):
        by_collection.setdefault(q.collection, []).append((q.query, q.expected_document_id))
    if not by_collection:
        ctx.skip(f"no golden queries registered{' for ' + ctx.target if ctx.target else ''} (admin or API)")
    tolerance = settings.EMBEDPORTAL_OPS_TEST_REGRESSION_TOLERANCE
    if drops := [d for c in by_collection if (d := quality.dropped(c, tolerance))]:
        ctx.fail("; ".join(drops))
    ranks: list[int | None] = []
    misses, collections = [], {}
    for collection, pairs in by_collection.items():
        found, missed = ranked(ctx, collection, pairs)
        m = evaluate(found, missed)
        collections[collection.name] = {k: m[k] for k in ("queries", "recall_at_k", "mrr")}
        ranks += found
        misses += [f"{collection.name}: {miss}" for miss in missed]
    return compare(ctx, {**evaluate(ranks, misses), "collections": collections})
