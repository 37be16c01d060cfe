"""Retrieval quality: a collection's golden queries run through search, scored per document
(recall@1/5/10, MRR@10, nDCG@10) and stored as RetrievalEvaluation history; a change of what retrieval
depends on (search settings saved, a re-embed switched to) is evaluated before and after (the receivers)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import F
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver
from prometheus_client.core import Metric

from embedportal import collectors
from embedportal.api.strict import JSONInputError, json_error, loads
from embedportal.printable import unsafe_character
from embedportal.storable import unstorable
from pipeline import backfill, encoder
from pipeline.choices import SearchMode
from pipeline.models import METRICS, Collection, Document, GoldenQuery, RetrievalEvaluation
from pipeline.search import search, switched_since

# What search results depend on besides the vectors (Collection.REEMBED_FIELDS): a change of one is
# evaluated before and after (the receivers below).
SEARCH_FIELDS = ("search_mode", "keyword_weight", "fusion", "rerank_model", "rerank_api_base", "ef_search")
DEPTH = 10  # documents ranked per query: the deepest cut-off reported
# A JSONL line's keys and their bounds (the model's fields'); the longest line they allow, every
# character a 6-byte JSON escape, with room for the keys.
GOLDEN_BOUNDS = {
    key: GoldenQuery._meta.get_field(f).max_length
    for key, f in (("query", "query"), ("expected", "expected_document_id"))
}
GOLDEN_LINE_BYTES = 6 * sum(GOLDEN_BOUNDS.values()) + 1024
# What a new local runtime (runtime_gate) or a configuration change (dropped) must not lower.
GATED = ("recall_at_5", "mrr_at_10")
QUALITY = "embedding_pipeline_retrieval_quality"
TARGET = "embedding_pipeline_retrieval_target"
# What an evaluation's figures depend on, kept with them so history shows what changed.
CONFIGURATION = (
    "model chunking_strategy chunk_unit chunk_size chunk_overlap contextual_chunks keyword_weight fusion "
    "rerank_model ef_search generation"
).split()

logger = logging.getLogger(__name__)


def scores(ranked: Sequence[str], expected: str) -> dict[str, float]:
    """One query's figures: `ranked` document ids best first, `expected` the one that answers it
    (so recall@k is 1 if it is in the top k, and nDCG@10 is 1 / log2(1 + its rank))."""
    rank = ranked.index(expected) + 1 if expected in ranked[:DEPTH] else None
    return {
        "recall_at_1": float(rank == 1),
        "recall_at_5": float(rank is not None and rank <= 5),
        "recall_at_10": float(rank is not None),
        "mrr_at_10": 1 / rank if rank else 0.0,
        "ndcg_at_10": 1 / math.log2(rank + 1) if rank else 0.0,
    }


def configuration(collection: Collection, mode: str) -> dict:
    """What an evaluation measured: during a re-embed, the generation searched, not the one being built."""
    searched = backfill.serving(collection)
    return {"mode": mode, **{f: getattr(searched, f) for f in CONFIGURATION}}


def unknown_answers(collection: Collection) -> list[str]:
    """The documents golden queries expect that the collection does not hold: those queries can never
    be answered (a typo, a page renamed or deleted since), and pull every figure down."""
    expected = collection.golden_queries.values_list("expected_document_id", flat=True)
    held = Document.objects.filter(collection=collection, external_id__in=expected).values_list("external_id")
    return sorted(set(expected.exclude(expected_document_id__in=held)))


def unknown_warning(collection: Collection, unknown: list[str]) -> str:
    listed = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
    return (
        f"warning: golden queries of {collection.name} expect {len(unknown)} document(s) it does not hold "
        f"({listed}); they can never be found: fix their expected_document_id or enqueue the documents"
    )


def figures(collection: Collection, mode: str) -> tuple[dict[str, float], int]:
    """The mean figures of every golden query of the collection searched in `mode`, and their number
    (a ValidationError if it has none)."""
    golden = list(collection.golden_queries.values_list("query", "expected_document_id"))
    if not golden:
        raise ValidationError(f"collection {collection.name!r} has no golden queries; import some first")
    totals = dict.fromkeys(METRICS, 0.0)
    for query, expected in golden:
        ranked = [h.document_id for h in search(collection, query, DEPTH, source="", by_document=True, mode=mode)]
        for metric, value in scores(ranked, expected).items():
            totals[metric] += value
    return {m: round(v / len(golden), 4) for m, v in totals.items()}, len(golden)


def evaluate(
    collection: Collection,
    mode: str | None = None,
    trigger: str = "command",
    before: RetrievalEvaluation | None = None,
) -> RetrievalEvaluation:
    """Store the mean figures of the collection's golden queries searched in `mode` (default: its own);
    `before`: the evaluation before a configuration change that this one compares with."""
    mode = mode or collection.search_mode
    means, queries = figures(collection, mode)
    # A re-embed switched generation during the run: its figures mix (or, read before, miss) the deleted
    # one; the evaluation is of the generation searched now.
    while (current := switched_since(collection)) is not None:
        collection = current
        means, queries = figures(collection, mode)
    return RetrievalEvaluation.objects.create(
        collection=collection,
        mode=mode,
        queries=queries,
        configuration=configuration(collection, mode),
        trigger=trigger,
        before=before,
        **means,
    )


def before_change(collection: Collection) -> RetrievalEvaluation | None:
    """What a change of the collection's retrieval is compared with: its latest evaluation in its
    search mode of the configuration being changed, or one run now; None without golden queries."""
    if not collection.golden_queries.exists():
        return None
    runs = collection.evaluations.filter(mode=collection.search_mode, configuration__generation=collection.generation)
    current = configuration(collection, collection.search_mode)
    latest = next((run for run in runs[:1] if run.configuration == current), None)
    return latest or evaluate(collection, trigger="before change")


def dropped(collection: Collection, tolerance: float) -> str | None:
    """What the collection's latest configuration change cost beyond `tolerance` (recall@5 or
    MRR@10 of its evaluation after against before), or None."""
    after = collection.evaluations.filter(before__isnull=False).select_related("before").first()
    if after is None:
        return None
    worse = [
        f"{name} {getattr(after, name):.3f} < {getattr(after.before, name):.3f}"
        for name in GATED
        if getattr(after, name) < getattr(after.before, name) - tolerance
    ]
    if not worse:
        return None
    changed = {k: v for k, v in after.configuration.items() if after.before.configuration.get(k) != v}
    return (
        f"{collection.name}: the {after.trigger} at {after.evaluated_at:%Y-%m-%d %H:%M} ({changed}) dropped "
        f"{', '.join(worse)} (before) by more than the tolerance {tolerance:g}"
    )


def runtime_gate(collection: Collection, candidate: Any, reference: Any) -> dict[str, Any]:
    """Whether the local encoder `candidate` may write beside the collection's vectors: its golden
    queries embedded by `candidate` and by `reference` (PyTorch) and searched by vector in them, the
    candidate passes unless recall@5 or MRR@10 drops."""
    with encoder.using(candidate):
        ours, queries = figures(collection, SearchMode.VECTOR)
    with encoder.using(reference):
        theirs, _ = figures(collection, SearchMode.VECTOR)
    problems = [f"{m} {ours[m]} < {theirs[m]} on PyTorch" for m in GATED if ours[m] < theirs[m]]
    return {
        "runtime": encoder.label(candidate),
        "passed": not problems,
        "problems": problems,
        "queries": queries,
        **{m: ours[m] for m in GATED},
        "reference": {m: theirs[m] for m in GATED},
    }


MAX_GOLDEN_QUERIES = 10_000  # a collection's set: each is a search in every evaluation


def parse_jsonl(lines: Iterable[str]) -> list[tuple[str, str]]:
    """(query, expected document id) of each {"query": ..., "expected": ...} line; ValidationError says what to fix."""
    items: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = loads(line)
        except JSONInputError as exc:
            raise ValidationError(f"line {number}: {exc}") from None
        except ValueError as exc:
            raise ValidationError(f"line {number}: not JSON ({json_error(exc)})") from None
        if not isinstance(item, dict) or not all(
            isinstance(item.get(key), str) and item[key].strip() for key in ("query", "expected")
        ):
            raise ValidationError(f'line {number}: expected an object {{"query": "...", "expected": "document id"}}')
        query, expected = item["query"].strip(), item["expected"].strip()
        for key, value in (("query", query), ("expected", expected)):
            if problem := unstorable(value) or unsafe_character(value):
                raise ValidationError(f"line {number}: the {key} {problem}")
            if len(value) > GOLDEN_BOUNDS[key]:
                raise ValidationError(
                    f"line {number}: the {key} has {len(value)} characters; at most {GOLDEN_BOUNDS[key]}"
                )
        if query.lower() in seen:
            raise ValidationError(f"line {number}: the query of line {seen[query.lower()]} again; keep one")
        if len(items) == MAX_GOLDEN_QUERIES:
            raise ValidationError(f"more than {MAX_GOLDEN_QUERIES} golden queries; keep the ones that matter most")
        seen[query.lower()] = number
        items.append((query, expected))
    return items


def save_golden(collection: Collection, items: Sequence[tuple[str, str]], replace: bool = False) -> int:
    """Add or update golden queries (by their text); `replace` drops the others. Returns rows written."""
    with transaction.atomic():
        if replace:
            collection.golden_queries.exclude(query__in=[q for q, _ in items]).delete()
        for query, expected in items:
            GoldenQuery.objects.update_or_create(
                collection=collection, query=query, defaults={"expected_document_id": expected}
            )
    return len(items)


def latest() -> list[RetrievalEvaluation]:
    """Each collection's latest evaluation in its own search mode (what its users get), operations
    tests' and capacity scratch collections left out."""
    runs = (
        RetrievalEvaluation.objects.filter(mode=F("collection__search_mode"))
        .select_related("collection")
        .order_by("collection_id", "-evaluated_at")
        .distinct("collection_id")
    )
    return [run for run in runs if not run.collection.is_reserved]


def evaluate_all(trigger: str = "schedule") -> dict[str, float]:
    """Evaluate every collection with golden queries in its search mode: {collection: recall@5}."""
    named = Collection.objects.filter(golden_queries__isnull=False).distinct()
    return {c.name: evaluate(c, trigger=trigger).recall_at_5 for c in named if not c.is_reserved}


def _evaluated(evaluation: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """An evaluation around a change, which must not cost the change itself (a provider down)."""
    try:
        return evaluation(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 -- logged; the change stands unevaluated
        logger.warning("retrieval evaluation around a configuration change failed: %s", exc)
        return None


@receiver(pre_save, sender=Collection)
def evaluate_before_change(sender: type[Collection], instance: Collection, **kwargs: Any) -> None:
    """Saving new search settings (admin, API) or starting a re-embed: the evaluation to compare with."""
    old = None if kwargs.get("raw") or instance.pk is None else Collection.objects.filter(pk=instance.pk).first()
    watched = (*SEARCH_FIELDS, *Collection.REEMBED_FIELDS)
    if old is None or all(getattr(old, f) == getattr(instance, f) for f in watched):
        return
    searched = any(getattr(old, f) != getattr(instance, f) for f in SEARCH_FIELDS)
    instance._evaluated_before = (searched, _evaluated(before_change, old))


@receiver(post_save, sender=Collection)
def evaluate_after_search_change(sender: type[Collection], instance: Collection, **kwargs: Any) -> None:
    """New search settings take effect at once (a re-embed's at its switch: below)."""
    searched, before = instance.__dict__.pop("_evaluated_before", (False, None))
    if searched and before is not None:
        _evaluated(evaluate, instance, trigger="settings change", before=before)


@receiver(backfill.generation_switched)
def evaluate_after_reembed(sender: type, collection_id: int, previous: int, **kwargs: Any) -> None:
    collection = Collection.objects.get(pk=collection_id)
    runs = collection.evaluations.filter(mode=collection.search_mode, configuration__generation=previous)
    if before := runs.first():
        _evaluated(evaluate, collection, trigger="re-embed", before=before)


class QualityCollector(collectors.DatabaseCollector):
    """embedding_pipeline_retrieval_quality{collection,metric} from each collection's latest
    evaluation, and the recall@5 target the retrieval quality SLO holds it to."""

    subject = "retrieval quality"
    families = collectors.fresh(
        (QUALITY, "The collection's latest golden-query evaluation in its search mode.", ["collection", "metric"]),
        (TARGET, "The collection's recall@5 target (the retrieval quality SLO).", ["collection"]),
    )

    def fill(self, cur: CursorWrapper, quality: Metric, target: Metric) -> None:
        for run in latest():
            for metric, value in run.figures().items():
                quality.add_metric([run.collection.name, metric], value)
            target.add_metric([run.collection.name], run.collection.retrieval_target)
