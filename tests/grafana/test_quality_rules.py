"""The retrieval quality SLO: its alert is generated from the one SLO spec, valid for Prometheus,
unit-tested with promtool, and fed by the gauges the app really exports."""

from __future__ import annotations

import pytest

from grafana import slo_rules as slo
from pipeline.collections import create_collection
from pipeline.models import GoldenQuery, RetrievalEvaluation
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.quality import evaluate_all
from pipeline.queue import IncomingDocument, enqueue
from tests.tools import parse_metrics as parse
from tests.tools import run_promtool

NAME = "quality.rules.yml"


def test_quality_rules_equal_a_fresh_generation_and_pass_promtool():
    assert slo.QUALITY_OUTPUT.read_text(encoding="utf-8") == slo.render_quality(), "run: python -m grafana"
    result = run_promtool("check", "rules", "--lint-fatal", NAME)
    assert result.returncode == 0, result.stdout + result.stderr
    result = run_promtool("test", "rules", "tests/quality_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def evaluation(collection, mode: str, recall_at_5: float) -> RetrievalEvaluation:
    figures = dict(recall_at_1=0.5, recall_at_10=1.0, mrr_at_10=0.6, ndcg_at_10=0.7)
    return RetrievalEvaluation.objects.create(
        collection=collection, mode=mode, queries=10, recall_at_5=recall_at_5, **figures
    )


@pytest.mark.django_db
def test_the_app_exports_the_latest_evaluation_in_the_collections_mode_and_its_target(client, hash_collection):
    evaluation(hash_collection, "hybrid", 0.8)
    evaluation(hash_collection, "hybrid", 0.85)  # the latest
    evaluation(hash_collection, "vector", 0.99)  # not the mode its users get
    m = parse(client.get("/metrics").content.decode())
    quality = "embedding_pipeline_retrieval_quality"
    assert m[(quality, (("collection", "hashes"), ("metric", "recall_at_5")))] == 0.85
    assert m[(quality, (("collection", "hashes"), ("metric", "mrr_at_10")))] == 0.6
    assert m[("embedding_pipeline_retrieval_target", (("collection", "hashes"),))] == 0.9


@pytest.mark.django_db
def test_the_scheduled_pass_evaluates_every_collection_with_golden_queries(hash_collection):
    create_collection(name="empty", model="local/hash-16")  # no golden queries: not evaluated
    enqueue(hash_collection, [IncomingDocument("a.md", "# Vacuum\n\nRun a vacuum at night.")])
    EmbeddingIngestionPipeline().drain()
    GoldenQuery.objects.create(collection=hash_collection, query="vacuum at night", expected_document_id="a.md")
    assert evaluate_all() == {"hashes": 1.0}
    assert RetrievalEvaluation.objects.get().trigger == "schedule"
