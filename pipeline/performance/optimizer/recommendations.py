"""What to change, and the effect expected, from an analysis' figures: `recommend` runs every rule; those of
each collection and of rate limits are here, the deployment's and search's in optimizer.deployment."""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from django.db import connection
from django.db.models import Avg, QuerySet

from pipeline import metrics
from pipeline.choices import DocumentStatus
from pipeline.embedding import provider_of
from pipeline.models import BatchTiming, Collection, Document
from pipeline.performance.optimizer.deployment import claim_batch, search, workers
from pipeline.performance.optimizer.figures import ADVICE_ONLY, Recommendation, change_of, stage_share

if TYPE_CHECKING:
    from pipeline.performance.optimizer.analysis import Analysis

MAX_PROVIDER_CONCURRENCY = 32
MAX_BATCH_SIZE = 2048
# A stage below this share of the per-document p95 is not worth tuning.
WORTH_IT = 0.3
# The lighter HNSW build suggested when index maintenance dominates.
HNSW_LIGHT = {"m": 12, "ef_construction": 40}
# Measured on the 2-core machines (docs/benchmarks.md, quiet): steady ingest 1.24x the single COPY
# floor with 2 workers, backfill (written without the index, built once) 3.0x.
BACKFILL_SPEEDUP = 3.0 / 1.24


def recommend(analysis: Analysis, collections: list[Collection], since: datetime) -> list[Recommendation]:
    recs = [workers(analysis), claim_batch(analysis), provider_limits(analysis, collections)]
    recs += search(collections, since)
    for c in collections:
        figures = analysis.collections.get(c.name)
        if figures and figures["documents"]:
            recs += [batch_size(c, figures, since), provider_concurrency(c, figures, since), *index_build(c, figures)]
    return [rec for rec in [*recs, maintenance_work_mem(collections)] if rec is not None]


def _stored(c: Collection, since: datetime) -> QuerySet[BatchTiming]:
    """The window's batch rows that stored documents (a batch that only failed has no shape to tune)."""
    return BatchTiming.objects.filter(collection=c, finished_at__gte=since, documents__gt=0)


def call_cost_fit(c: Collection, since: datetime) -> tuple[float, float] | None:
    """(seconds per provider call, seconds per chunk) fitted over the window's batches:
    embedding_seconds = calls * a + chunks * b. None when the batches cannot separate the two."""
    rows = list(_stored(c, since).values_list("chunks", "batch_size", "embedding_seconds"))
    x = np.array([[math.ceil(chunks / size), chunks] for chunks, size, _ in rows], dtype=float)
    if len(np.unique(x, axis=0)) < 3:
        return None
    y = np.array([seconds for _, _, seconds in rows])
    (a, b), *_ = np.linalg.lstsq(x, y, rcond=None)
    return (float(a), float(b)) if a > 0 and b >= 0 else None


def batch_size(c: Collection, figures: dict[str, Any], since: datetime) -> Recommendation | None:
    """Embedding dominates and batches need several provider calls: send more chunks per call."""
    share = stage_share(figures, "embedding")
    per_batch = _stored(c, since).aggregate(per_batch=Avg("chunks"))["per_batch"]
    if share < WORTH_IT or not per_batch or c.batch_size >= MAX_BATCH_SIZE:
        return None
    calls_now = math.ceil(per_batch / c.batch_size)
    if calls_now <= 1:
        return None
    proposed = min(MAX_BATCH_SIZE, c.batch_size * 2)
    calls_new = math.ceil(per_batch / proposed)
    fit = call_cost_fit(c, since)
    if fit:
        saved = (calls_now - calls_new) * fit[0]
        effect = (
            f"{calls_now} -> {calls_new} provider calls per claimed batch; at {fit[0] * 1000:.1f} ms fixed cost "
            f"per call (fitted over the window), about {saved:.3f} s less embedding per batch"
        )
    else:
        effect = f"{calls_now} -> {calls_new} provider calls per claimed batch (each call's fixed cost saved)"
    return change_of(
        c,
        "batch_size",
        proposed,
        id=f"batch-size-{c.name}",
        title=f"Raise the embedding batch size of {c.name} to {proposed}",
        expected_effect=effect,
        reason=f"embedding is {share:.0%} of this collection's per-document p95 and a batch of "
        f"{per_batch:.0f} chunks needs {calls_now} calls of {c.batch_size}",
    )


def index_build(c: Collection, figures: dict[str, Any]) -> list[Recommendation]:
    """Storage (HNSW maintenance) dominates: load without the index when most is still to come, or
    build a lighter graph. Neither while a backfill runs (it has no index to maintain)."""
    share = stage_share(figures, "storage")
    if share < WORTH_IT or c.building_generation is not None:
        return []
    pending = Document.objects.filter(collection=c, status=DocumentStatus.PENDING).count()
    embedded = Document.objects.filter(collection=c, status=DocumentStatus.EMBEDDED).count()
    recs = []
    if pending > embedded:
        searched = " (search scans the embedded ones exactly until then)" if embedded else ""
        recs.append(
            change_of(
                c,
                "backfill",
                True,
                current=False,
                id=f"backfill-{c.name}",
                title=f"Load {c.name} in backfill mode",
                expected_effect=f"about {BACKFILL_SPEEDUP:.1f}x the ingest rate for the {pending} queued documents "
                f"(write without the HNSW index, build it once at the end{searched}; docs/benchmarks.md)",
                reason=f"storage is {share:.0%} of the per-document p95 and {pending} documents are queued "
                f"against {embedded} embedded: a first load or a re-embed",
            )
        )
    options = {"m": c.hnsw_m, "ef_construction": c.hnsw_ef_construction}
    if options["ef_construction"] > HNSW_LIGHT["ef_construction"]:
        proposed = {"m": min(options["m"], HNSW_LIGHT["m"]), "ef_construction": HNSW_LIGHT["ef_construction"]}
        ratio = proposed["ef_construction"] / options["ef_construction"]
        recs.append(
            change_of(
                c,
                "hnsw",
                proposed,
                current=options,
                id=f"hnsw-build-{c.name}",
                title=f"Rebuild the HNSW index of {c.name} with m={proposed['m']}, "
                f"ef_construction={proposed['ef_construction']}",
                expected_effect=f"index insertion visits about {ratio:.0%} of the candidates it does now "
                f"(m={options['m']}, ef_construction={options['ef_construction']}): storage time down by up to "
                f"{1 - ratio:.0%} of its index part; check recall with the golden queries first",
                reason=f"storage is {share:.0%} of the per-document p95; HNSW maintenance is most of it",
            )
        )
    return recs


def maintenance_work_mem(collections: list[Collection]) -> Recommendation | None:
    """An HNSW build (backfill, reindex) is fast only while the graph fits in maintenance_work_mem."""
    if not collections:
        return None
    with connection.cursor() as cur:
        cur.execute("SELECT m, pg_size_bytes(m) FROM current_setting('maintenance_work_mem') m")
        current, current_bytes = cur.fetchone()
        # The largest collection's graph: each element holds its vector and m * 2 neighbours at level 0.
        cur.execute(
            "SELECT c.name, c.dimensions, c.hnsw_m, count(*) FROM pipeline_chunk k "
            "JOIN pipeline_collection c ON c.id = k.collection_id GROUP BY c.name, c.dimensions, c.hnsw_m "
            "ORDER BY count(*) * c.dimensions DESC LIMIT 1"
        )
        row = cur.fetchone()
    if row is None:
        return None
    name, dims, m, chunks = row
    needed = int(chunks * (dims * 4 + m * 2 * 8 + 64) * 1.3)
    if needed <= current_bytes:
        return None
    proposed = f"{2 ** math.ceil(math.log2(needed / 1024**2))}MB"
    return Recommendation(
        id="maintenance-work-mem",
        title=f"Set maintenance_work_mem to {proposed} for index builds",
        expected_effect=f"the HNSW graph of {name} ({chunks} chunks, ~{needed / 1024**2:.0f} MB) is built in "
        f"memory instead of spilling past {current} (pgvector's build slows several-fold once it no longer "
        "fits); set it for the build's session or in postgresql.conf (the backfill's builds and the optimizer's "
        "rebuilds set it per build, up to EMBEDPORTAL_INDEX_BUILD_MEMORY_MB)",
        reason=f"maintenance_work_mem is {current}; a PostgreSQL setting the optimizer does not change",
        setting="maintenance_work_mem",
        current=current,
        proposed=proposed,
    )


def _rate_limited() -> int:
    return int(metrics.error_counts().get("rate_limit", 0))


def provider_concurrency(c: Collection, figures: dict[str, Any], since: datetime) -> Recommendation | None:
    """A remote provider's calls are mostly waiting: with embedding the bottleneck and more calls per
    batch than run at once, wait for more of them together (pipeline.batches.BatchProcessing._run_calls). Not
    while providers answer 429: then the quota, not the waiting, is the limit."""
    if provider_of(c.model) == "local" or c.provider_concurrency >= MAX_PROVIDER_CONCURRENCY or _rate_limited():
        return None
    share = stage_share(figures, "embedding")
    per_batch = _stored(c, since).aggregate(per_batch=Avg("chunks"))["per_batch"]
    if share < WORTH_IT or not per_batch:
        return None
    calls = math.ceil(per_batch / c.batch_size)
    if calls <= c.provider_concurrency:
        return None
    proposed = min(MAX_PROVIDER_CONCURRENCY, c.provider_concurrency * 2, calls)
    rounds_now, rounds_new = math.ceil(calls / c.provider_concurrency), math.ceil(calls / proposed)
    return change_of(
        c,
        "provider_concurrency",
        proposed,
        id=f"provider-concurrency-{c.name}",
        title=f"Let workers make {proposed} embedding calls at once for {c.name} (now {c.provider_concurrency})",
        expected_effect=f"a batch's {calls} provider calls wait in {rounds_new} rounds instead of {rounds_now}: "
        f"embedding time per batch down to about {rounds_new / rounds_now:.0%} while the provider's latency, "
        "not its quota or this host's CPU, is the limit (docs/benchmarks.md: 200 ms provider, 1 -> 8 calls "
        "at once gave 2.6x)",
        reason=f"embedding is {share:.0%} of this collection's per-document p95 with a remote provider, and a "
        f"batch needs {calls} calls of {c.batch_size} chunks; no 429 answers so far",
    )


def provider_limits(analysis: Analysis, collections: list[Collection]) -> Recommendation | None:
    """Rate-limit errors: fewer concurrent calls, or a higher quota. When exactly one remote
    collection makes several calls at once, it is the one to slow down (applied like any
    collection change); otherwise the 429 counts, which carry no collection, pick none."""
    if not (limited := _rate_limited()):
        return None
    concurrent = [c for c in collections if provider_of(c.model) != "local" and c.provider_concurrency > 1]
    if len(concurrent) == 1:
        [c] = concurrent
        proposed = max(1, c.provider_concurrency // 2)
        return change_of(
            c,
            "provider_concurrency",
            proposed,
            id=f"provider-rate-limit-{c.name}",
            title=f"Lower the provider concurrency of {c.name} from {c.provider_concurrency} to {proposed}",
            expected_effect=f"fewer 429 retries ({limited} so far, each one a backoff wait in a worker) at the "
            "cost of more waiting per batch; or raise the provider's rate limit instead",
            reason=f"providers answered 429 and {c.name} is the only remote collection making several calls "
            f"at once ({c.provider_concurrency} per batch, per worker)",
        )
    # The providers, not the models: a platform recommendation is shown to every team, and a model is its team's.
    remote = sorted({provider_of(c["model"]) for c in analysis.collections.values()} - {"local"})
    return Recommendation(
        id="provider-rate-limit",
        title="Lower provider concurrency or raise the provider's rate limit",
        expected_effect=f"no more 429 retries ({limited} so far, each one a backoff wait in a worker)",
        reason=f"providers answered 429 ({', '.join(remote) or 'unknown'}); concurrency is the workers "
        "embedding with that provider times its collections' provider_concurrency (set in the admin or the "
        "API: the 429 counts do not say which collection, so the optimizer does not pick one); the worker "
        f"count is {ADVICE_ONLY}",
        setting="Q_WORKERS",
        current=analysis.workers,
        proposed=max(1, analysis.workers - 1),
    )
