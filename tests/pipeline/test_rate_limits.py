"""Provider rate limits per collection, held across workers through the database: every worker's
calls are spaced so the provider sees at most the limits."""

from __future__ import annotations

import pytest

from pipeline import ratelimits
from pipeline.choices import DocumentStatus
from pipeline.models import Collection, Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from tests.factories import fake_backed
from tests.tools import concurrently


@pytest.mark.django_db
def test_turns_are_spaced_by_the_request_and_token_limits(hash_collection):
    assert ratelimits.reserve(hash_collection, 100) == 0  # no limits: no bookkeeping
    Collection.objects.filter(pk=hash_collection.pk).update(requests_per_minute=60)
    limited = Collection.objects.get(pk=hash_collection.pk)
    turns = [ratelimits.reserve(limited, 10) for _ in range(3)]
    assert turns[0] == 0 and turns[1] == pytest.approx(1, abs=0.2) and turns[2] == pytest.approx(2, abs=0.2)
    # 600 tokens a minute: a call of 100 tokens moves the next one 10 s on (after the 1 s spacing).
    Collection.objects.filter(pk=limited.pk).update(requests_per_minute=None, tokens_per_minute=600)
    limited.refresh_from_db()
    first = ratelimits.reserve(limited, 100)
    assert first == pytest.approx(3, abs=0.2)  # the request turns reserved above come first
    assert ratelimits.reserve(limited, 100) == pytest.approx(first + 10, abs=0.2)


@pytest.mark.django_db(transaction=True)
def test_three_workers_together_keep_to_the_collections_request_limit(fake_provider, monkeypatch):
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-test-secret-123456")
    # 240 calls a minute: one every 0.25 s, whichever worker makes it.
    limited = fake_backed("limited", fake_provider.api_base, batch_size=1, requests_per_minute=240)
    enqueue(limited, [IncomingDocument(f"d{i}", f"document {i}") for i in range(18)])

    concurrently(lambda i: EmbeddingIngestionPipeline(claim_batch=2).drain(), 3, timeout=120)

    assert Document.objects.filter(status=DocumentStatus.EMBEDDED).count() == 18
    times = sorted(r["at"] for r in fake_provider.requests)
    assert len(times) == 18
    # At most the limit in any window (plus the call on its edge), whichever worker made them.
    busiest = max(sum(t <= start + 2.0 for t in times[i:]) for i, start in enumerate(times))
    assert busiest <= 8 + 1, times
    per_minute = (len(times) - 1) / (times[-1] - times[0]) * 60
    print(f"18 calls from 3 workers: {per_minute:.0f} requests/minute seen by the provider (limit 240)")
    assert per_minute <= 240 * 1.05


def test_calls_are_cut_at_the_batch_size_and_the_token_limit():
    texts = ["a" * 36, "b" * 36, "c" * 36, "d" * 396]  # 10, 10, 10 and 100 tokens
    assert list(ratelimits.calls(texts, 2, None)) == [texts[:2], texts[2:]]
    assert list(ratelimits.calls(texts, 16, 30)) == [texts[:3], texts[3:]]  # the last one alone, over the limit
    assert list(ratelimits.calls(texts, 16, 29)) == [texts[:2], [texts[2]], [texts[3]]]


@pytest.mark.django_db(transaction=True)
def test_a_batch_over_the_token_limit_is_sent_in_calls_under_it_and_a_chunk_over_it_fails(fake_provider, monkeypatch):
    """A provider answers a request over its per-minute token quota with a 429 every time, which the
    pipeline defers as a passing limit: a batch over the quota waited for good."""
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-test-secret-123456")
    fake_provider.tokens_per_minute = 300
    limited = fake_backed("tpm", fake_provider.api_base, batch_size=16, chunk_size=1200, tokens_per_minute=300)
    # About 31 and 276 tokens: one call of both is over the quota, each alone is under it.
    enqueue(limited, [IncomingDocument("short", "s" * 120), IncomingDocument("long", "l " * 550)])
    wide = fake_backed("tpm-wide", fake_provider.api_base, chunk_size=2000, tokens_per_minute=300)
    enqueue(wide, [IncomingDocument("huge", "x " * 650)])  # one chunk of about 330 tokens

    EmbeddingIngestionPipeline(claim_batch=2).drain()

    assert set(Document.objects.filter(status="embedded").values_list("external_id", flat=True)) == {"short", "long"}
    assert fake_provider.calls["429"] == 0 and len(fake_provider.requests) == 2
    huge = Document.objects.get(external_id="huge")
    assert huge.status == DocumentStatus.FAILED
    assert "over the collection's tokens_per_minute (300)" in huge.last_error
