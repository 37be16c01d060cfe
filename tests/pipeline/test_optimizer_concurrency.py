"""The optimizer's provider concurrency rules: more calls at once when a remote provider's waiting
dominates, fewer when providers answer 429; both applied and judged like any collection change."""

from __future__ import annotations

import pytest

from pipeline.collections import create_collection
from pipeline.models import Collection, OptimizationChange
from pipeline.performance.optimizer import EmbeddingPipelineOperationsOptimizer, analyse, evaluate_pending
from pipeline.performance.optimizer import recommendations as rules
from tests.pipeline.test_optimizer import batch, embedding_bound

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_429(monkeypatch):
    monkeypatch.setattr(rules, "_rate_limited", lambda: 0)


def by_id() -> dict:
    return {r.id: r for r in analyse().recommendations}


def test_a_remote_collection_waiting_on_its_provider_gets_more_calls_at_once(fake_collection, no_429):
    embedding_bound(fake_collection)  # batch_size 4: 5 to 24 calls per batch

    rec = by_id()["provider-concurrency-fake"]

    assert (rec.setting, rec.current, rec.proposed, rec.appliable) == ("provider_concurrency", 1, 2, True)
    assert "rounds instead of" in rec.expected_effect and "no 429" in rec.reason


def test_local_models_and_batches_of_one_call_get_no_concurrency_advice(hash_collection, fake_collection, no_429):
    embedding_bound(hash_collection)
    for i in range(12):  # one call per batch: nothing to overlap
        batch(fake_collection, 600 - i * 5, chunks=3, embedding=0.5)

    ids = set(by_id())

    assert "provider-concurrency-hashes" not in ids and "provider-concurrency-fake" not in ids


def test_429s_stop_the_advice_to_raise_it(fake_collection, monkeypatch):
    monkeypatch.setattr(rules, "_rate_limited", lambda: 3)
    embedding_bound(fake_collection)
    assert "provider-concurrency-fake" not in by_id()


@pytest.mark.parametrize(("embedding_after", "status", "value"), [(0.05, "kept", 2), (3.0, "reverted", 1)])
def test_applied_concurrency_is_kept_when_batches_get_faster_and_reverted_when_not(
    fake_collection, no_429, settings, embedding_after, status, value
):
    settings.EMBEDPORTAL_OPTIMIZER_EVALUATE_BATCHES = 5
    embedding_bound(fake_collection)

    change = EmbeddingPipelineOperationsOptimizer().apply(fake_collection, "provider-concurrency-fake", "test")

    fake_collection.refresh_from_db()
    assert (change.setting, change.before, change.after, fake_collection.provider_concurrency) == (
        "provider_concurrency",
        1,
        2,
        2,
    )
    for i in range(5):
        batch(fake_collection, -1 - i, chunks=40, embedding=embedding_after)
    (result,) = evaluate_pending()
    fake_collection.refresh_from_db()
    assert (result.status, fake_collection.provider_concurrency) == (status, value)
    assert OptimizationChange.objects.get().status == status


def test_429s_with_one_concurrent_remote_collection_lower_its_concurrency(fake_collection, monkeypatch, settings):
    monkeypatch.setattr(rules, "_rate_limited", lambda: 7)
    Collection.objects.filter(pk=fake_collection.pk).update(provider_concurrency=8)
    embedding_bound(fake_collection)

    rec = by_id()["provider-rate-limit-fake"]

    assert (rec.setting, rec.current, rec.proposed, rec.appliable) == ("provider_concurrency", 8, 4, True)
    EmbeddingPipelineOperationsOptimizer().apply(Collection.objects.get(pk=fake_collection.pk), rec.id, "test")
    assert Collection.objects.get(pk=fake_collection.pk).provider_concurrency == 4


def test_429s_with_several_concurrent_remote_collections_stay_advice(fake_collection, fake_provider, monkeypatch):
    monkeypatch.setattr(rules, "_rate_limited", lambda: 7)
    other = create_collection(
        name="other",
        model="openai/fake-embedder",
        api_base=fake_provider.api_base,
        api_key_env="FAKE_PROVIDER_KEY",
        dimensions=8,
    )
    Collection.objects.filter(pk__in=[fake_collection.pk, other.pk]).update(provider_concurrency=4)
    embedding_bound(fake_collection)

    recs = by_id()

    assert not any(r.startswith("provider-rate-limit-") for r in recs)
    assert recs["provider-rate-limit"].appliable is False
