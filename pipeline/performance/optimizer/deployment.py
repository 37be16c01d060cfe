"""Recommendations about the deployment (workers, claim batch) and search (ef_search), from an
analysis' figures, the latest capacity measurement and the search times."""

from __future__ import annotations

import os
from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings

from pipeline.models import Collection, SearchLatency
from pipeline.percentiles import searches
from pipeline.performance import capacity, slos
from pipeline.performance.optimizer.figures import ADVICE_ONLY, Recommendation, change_of, nearest_rank

if TYPE_CHECKING:
    from pipeline.performance.optimizer.analysis import Analysis

MAX_CLAIM_BATCH = 256

# pgvector's default ef_search (what search uses for k <= 20 when the collection sets none), and
# the least the optimizer proposes.
DEFAULT_EF_SEARCH = 40

MIN_EF_SEARCH = 10


def workers(analysis: Analysis) -> Recommendation | None:
    """Saturated workers with a queue: more workers, as far as the capacity measurement says it scales."""
    found = analysis.bottleneck
    busy = found.get("workers_busy", 0.0)
    n = max(1, analysis.workers)
    if found.get("stage") == "workers":
        m = capacity.latest()  # only a figure of the runtime serving now
        fit = capacity.fit_of(m) if m else None
        if fit and fit.rate(n) and fit.rate(n + 1):
            peak = fit.peak_workers
            if peak is not None and n + 1 > peak:
                effect = f"none: the capacity fit peaks at N*={peak:.1f} workers; look at the bottleneck stage instead"
            else:
                effect = (
                    f"throughput {fit.rate(n):.1f} -> {fit.rate(n + 1):.1f} docs/s "
                    f"(USL fit of the {m.model} capacity measurement of {m.measured_at:%Y-%m-%d}"
                    f"{f' on {m.local_encoder}' if m.local_encoder else ''})"
                )
        elif n >= (os.cpu_count() or 1):
            effect = (
                f"none on this host: its {os.cpu_count()} cores already run {n} busy workers; add a machine (pod) "
                f"for up to {(n + 1) / n:.2f}x if the database keeps up (run measure_capacity to know)"
            )
        else:
            effect = f"up to {(n + 1) / n:.2f}x the throughput if the database keeps up; run measure_capacity to know"
        return _workers(n, n + 1, "workers", effect, found["reason"])
    if analysis.workers > 1 and analysis.documents and busy < 0.25 and (analysis.stages["queue_wait"].p95 or 0) < 1:
        effect = f"the same throughput: workers are busy {busy:.0%} of the time and nothing waits"
        reason = "idle capacity costs memory (each worker ~30 MB unique, docs/benchmarks.md)"
        return _workers(n, n - 1, "fewer-workers", effect, reason)
    return None


def _workers(n: int, proposed: int, rec_id: str, effect: str, reason: str) -> Recommendation:
    title = f"Run {proposed} workers instead of {n}"
    return Recommendation(
        rec_id, title, effect, f"{reason}; {ADVICE_ONLY}", setting="Q_WORKERS", current=n, proposed=proposed
    )


def claim_batch(analysis: Analysis) -> Recommendation | None:
    """A claim is one query whatever the batch: a big share means batches are too small."""
    claim, total = analysis.stages["claim"].p95 or 0.0, analysis.stages["total"].p95 or 0.0
    current = settings.EMBEDPORTAL_CLAIM_BATCH
    if not total or claim / (claim + total) < 0.1 or current >= MAX_CLAIM_BATCH:
        return None
    proposed = min(MAX_CLAIM_BATCH, current * 2)
    return Recommendation(
        id="claim-batch",
        title=f"Raise EMBEDPORTAL_CLAIM_BATCH to {proposed}",
        expected_effect=f"claim time per document about halves ({claim:.3f} s p95 per claim over "
        f"{current} documents, then over {proposed})",
        reason=f"claiming is {claim / (claim + total):.0%} of a batch's p95; {ADVICE_ONLY}",
        setting="EMBEDPORTAL_CLAIM_BATCH",
        current=current,
        proposed=proposed,
    )


def search(collections: list[Collection], since: datetime) -> list[Recommendation | None]:
    """Search p95 over its SLO target: a smaller ef_search visits fewer candidates. Per collection
    from its latest search times where it has EMBEDPORTAL_OPTIMIZER_EVALUATE_SEARCHES of them in the
    window; otherwise, from every collection's latest searches, as advice for every collection."""
    target = slos.target("search_latency")
    n = settings.EMBEDPORTAL_OPTIMIZER_EVALUATE_SEARCHES
    rows = SearchLatency.objects.filter(collection__in=collections, last_at__gte=since).select_related("collection")
    measured = [row for row in rows if len(row.recent) >= n]
    if measured:
        return [ef_search(row.collection, row.recent, target) for row in measured]
    return [ef_search_advice(target)]


def ef_search(c: Collection, recent: list[float], target: float) -> Recommendation | None:
    p95 = nearest_rank(recent, 0.95)
    effective = c.ef_search or DEFAULT_EF_SEARCH
    proposed = effective // 2
    if p95 <= target or proposed < MIN_EF_SEARCH:
        return None
    now = f"{c.ef_search}" if c.ef_search else f"unset (max({DEFAULT_EF_SEARCH}, 2k))"
    return change_of(
        c,
        "ef_search",
        proposed,
        id=f"hnsw-ef-search-{c.name}",
        title=f"Lower hnsw.ef_search of {c.name} to {proposed}",
        expected_effect=f"each search visits about half the candidates ({effective} -> {proposed} for k <= "
        f"{proposed}; never fewer than k): p95 {p95 * 1000:.0f} ms towards the {target * 1000:.0f} ms target, "
        "at some recall (check the golden queries)",
        reason=f"search p95 of {c.name} is {p95 * 1000:.0f} ms over its last {len(recent)} searches, above the "
        f"{target * 1000:.0f} ms SLO; its ef_search is {now}",
    )


def ef_search_advice(target: float) -> Recommendation | None:
    """No collection has enough searches of its own: all their latest searches say only that search is slow."""
    count, p95 = searches()
    if not count or p95 is None or p95 <= target:
        return None
    return Recommendation(
        id="hnsw-ef-search",
        title=f"Lower hnsw.ef_search from {DEFAULT_EF_SEARCH} to {DEFAULT_EF_SEARCH // 2} for k <= 10",
        expected_effect=f"each search visits about half the candidates: p95 {p95 * 1000:.0f} ms towards the "
        f"{target * 1000:.0f} ms target, at some recall (check the golden queries)",
        reason=f"search p95 is {p95 * 1000:.0f} ms over {count} searches, above the {target * 1000:.0f} ms SLO; "
        "no collection has enough searches of its own to tell which is slow: set ef_search on the "
        "slow collections (admin or API), or apply the per-collection recommendation once they have",
        setting="hnsw.ef_search",
        current=DEFAULT_EF_SEARCH,
        proposed=DEFAULT_EF_SEARCH // 2,
    )
