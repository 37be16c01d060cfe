"""A change of what retrieval depends on (search settings saved, a re-embed switched to) is evaluated
on the collection's golden queries before and after, the two linked; the operations tester's
regression scenario fails when the change lowered them."""

from __future__ import annotations

import pytest

from pipeline import backfill, recording
from pipeline.models import Collection, GoldenQuery, RetrievalEvaluation
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.quality import evaluate
from pipeline.queue import IncomingDocument, enqueue
from testing.choices import Outcome
from tests.tools import client_with

# One rare word per page: keyword search finds each page from a question naming it; hash vectors
# (local/hash-16) rank pages arbitrarily.
TOPICS = ["vacuum", "replication", "sharding", "indexes", "backups", "locks", "triggers", "sequences"]
TOPICS += ["partitions", "extensions", "tablespaces", "roles"]


@pytest.fixture
def golden(hash_collection):
    pages = [IncomingDocument(f"{t}.md", f"# {t.title()}\n\nNotes on {t} in the database.") for t in TOPICS]
    enqueue(hash_collection, pages)
    assert EmbeddingIngestionPipeline().drain().embedded == len(TOPICS)
    for topic in TOPICS:
        GoldenQuery.objects.create(
            collection=hash_collection, query=f"how do {topic} work", expected_document_id=f"{topic}.md"
        )
    Collection.objects.filter(pk=hash_collection.pk).update(search_mode="keyword")
    return hash_collection


def patch(collection: Collection, **fields) -> None:
    response = client_with("change_collection").patch(f"/api/v1/collections/{collection.name}/", fields, format="json")
    assert response.status_code == 200, response.content


def run_regression(collection: Collection):
    from tests.testing.conftest import run_one

    return run_one("regression_operator_golden_queries", collections=[collection.name])


def test_a_search_settings_change_is_evaluated_before_and_after_and_a_drop_fails_the_regression(golden):
    patch(golden, keyword_weight=0.3)  # no effect on keyword search
    after = RetrievalEvaluation.objects.get(trigger="settings change")
    assert after.before.trigger == "before change" and after.before.recall_at_5 == after.recall_at_5 == 1.0
    assert (after.before.configuration["keyword_weight"], after.configuration["keyword_weight"]) == (0.5, 0.3)
    assert run_regression(golden).outcome == Outcome.PASSED

    patch(golden, search_mode="vector")
    after = RetrievalEvaluation.objects.filter(trigger="settings change").first()
    assert after.mode == "vector" and after.before.mode == "keyword", "before: the latest, not run again"
    assert RetrievalEvaluation.objects.filter(trigger="before change").count() == 1
    assert after.recall_at_5 < after.before.recall_at_5 == 1.0
    result = run_regression(golden)
    assert result.outcome == Outcome.FAILED
    assert "hashes: the settings change" in result.message and "recall_at_5 0." in result.message
    assert "'mode': 'vector'" in result.message and "by more than the tolerance" in result.message


def test_a_change_without_golden_queries_or_unrelated_to_search_is_not_evaluated(golden, hash_collection):
    patch(golden, monthly_budget_usd=10.0)
    GoldenQuery.objects.all().delete()
    patch(golden, keyword_weight=0.2)
    assert not RetrievalEvaluation.objects.exists()


def test_an_ef_search_change_by_the_optimizer_is_evaluated_before_and_after(golden):
    from pipeline.performance.optimizer.changes import apply
    from pipeline.performance.optimizer.figures import Recommendation

    Collection.objects.filter(pk=golden.pk).update(search_mode="vector")
    golden.refresh_from_db()
    for _ in range(4):
        recording.record_search(golden, 0.2)
    apply(golden, Recommendation("ef-hashes", "t", "e", "r", "hashes", "ef_search", None, 20))
    after = RetrievalEvaluation.objects.get(trigger="optimizer")
    assert (after.before.configuration["ef_search"], after.configuration["ef_search"]) == (None, 20)
    assert after.before.trigger == "before change"


def test_a_reembed_is_evaluated_before_it_starts_and_after_its_switch(golden):
    backfill.begin_reembed(golden, chunk_size=100)
    before = RetrievalEvaluation.objects.get()
    assert (before.trigger, before.configuration["chunk_size"], before.configuration["generation"]) == (
        "before change",
        200,
        1,
    )
    EmbeddingIngestionPipeline().drain()
    after = RetrievalEvaluation.objects.get(trigger="re-embed")
    assert after.before == before
    assert (after.configuration["chunk_size"], after.configuration["generation"]) == (100, 2)
    assert after.recall_at_5 == 1.0


def test_an_evaluation_while_a_reembed_runs_is_labelled_with_what_it_searched(golden):
    # Search reads the old generation until the switch: an evaluation meanwhile measured chunks of 200
    # characters and was stored as of the re-embed's 100, so a before/after comparison mixed them up.
    backfill.begin_reembed(golden, chunk_size=100, contextual_chunks=True)
    during = evaluate(Collection.objects.get(pk=golden.pk))
    assert during.configuration["generation"] == 1
    assert (during.configuration["chunk_size"], during.configuration["contextual_chunks"]) == (200, False)
    EmbeddingIngestionPipeline().drain()
    after = evaluate(Collection.objects.get(pk=golden.pk))
    assert (after.configuration["generation"], after.configuration["chunk_size"]) == (2, 100)
    assert after.configuration["contextual_chunks"] is True
