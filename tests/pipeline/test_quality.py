"""Retrieval quality: golden queries imported, scored through search with the real local model,
stored as history and read through the command, the API and the admin."""

from __future__ import annotations

import json
import math
import os
import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from pipeline.collections import create_collection
from pipeline.models import GoldenQuery, RetrievalEvaluation
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.quality import scores
from pipeline.queue import IncomingDocument, enqueue
from testing.api.serializers import GoldenQuerySerializer
from tests.tools import client_with, error_of

CORPUS = {
    "cats": "Cats are small domesticated felines. They purr, groom themselves and hunt mice.",
    "postgres": "PostgreSQL is an open-source relational database with transactions, indexes and SQL queries.",
    "bread": "To bake bread, mix flour, water, salt and yeast, knead the dough, let it rise and bake it.",
    "volcano": "A volcano erupts when molten rock, ash and gases escape from a magma chamber below the crust.",
}
GOLDEN = [
    {"query": "which database supports SQL transactions?", "expected": "postgres"},
    {"query": "my kitten keeps purring", "expected": "cats"},
    {"query": "recipe with yeast and dough", "expected": "bread"},
    # Answered by no document of the corpus: every figure of this one is 0.
    {"query": "lava and magma eruption", "expected": "missing-page"},
]


def test_one_query_scores_by_the_rank_of_its_document():
    assert scores(["a", "b", "c"], "a") == {
        "recall_at_1": 1.0,
        "recall_at_5": 1.0,
        "recall_at_10": 1.0,
        "mrr_at_10": 1.0,
        "ndcg_at_10": 1.0,
    }
    third = scores(["a", "b", "c"], "c")
    assert (third["recall_at_1"], third["recall_at_5"], third["mrr_at_10"]) == (0.0, 1.0, 1 / 3)
    assert third["ndcg_at_10"] == pytest.approx(1 / math.log2(4))
    beyond = scores([str(i) for i in range(12)], "10")
    assert set(beyond.values()) == {0.0}, "rank 11 is past every cut-off"


@pytest.fixture
def golden_file(tmp_path: Path) -> Path:
    path = tmp_path / "golden.jsonl"
    path.write_text("\n".join(json.dumps(g) for g in GOLDEN) + "\n\n")
    return path


@pytest.fixture
def topics(db):
    collection = create_collection(name="topics", model="local/all-MiniLM-L6-v2")
    enqueue(collection, [IncomingDocument(k, v) for k, v in CORPUS.items()])
    assert EmbeddingIngestionPipeline().drain().embedded == len(CORPUS)
    return collection


def test_import_writes_golden_queries_and_a_reimport_updates_them(hash_collection, golden_file):
    call_command("import_golden_queries", str(golden_file), collection="hashes", stdout=StringIO())
    assert dict(GoldenQuery.objects.values_list("query", "expected_document_id")) == {
        g["query"]: g["expected"] for g in GOLDEN
    }
    golden_file.write_text(json.dumps({"query": GOLDEN[0]["query"], "expected": "cats"}))
    call_command("import_golden_queries", str(golden_file), collection="hashes", replace=True, stdout=StringIO())
    assert list(GoldenQuery.objects.values_list("query", "expected_document_id")) == [(GOLDEN[0]["query"], "cats")]


def test_import_dry_run_checks_the_file_and_writes_nothing(hash_collection, golden_file):
    out = StringIO()
    call_command("import_golden_queries", str(golden_file), collection="hashes", dry_run=True, stdout=out)
    assert "4 golden queries are valid" in out.getvalue()
    assert not GoldenQuery.objects.exists()


@pytest.mark.parametrize(
    "line, message",
    [
        ("not json", "line 2: not JSON"),
        ('{"query": "where are cats"}', 'line 2: expected an object {"query": "...", "expected": "document id"}'),
        ('{"query": " ", "expected": "cats"}', "line 2: expected an object"),
        ('["where are cats", "cats"]', "line 2: expected an object"),
        (json.dumps({"query": "q" * 2001, "expected": "cats"}), "line 2: the query has 2001 characters; at most 2000"),
        (json.dumps({"query": "q", "expected": "c" * 513}), "line 2: the expected has 513 characters; at most 512"),
        (json.dumps({**GOLDEN[0], "expected": "dogs"}), "line 2: the query of line 1 again; keep one"),
        ("\x00", "line 2: binary (a NUL byte)"),
        ("x" * 20_000, "line 2 is over the limit of"),
        # Each was a traceback (DataError, UnicodeEncodeError, RecursionError, ValueError).
        ('{"query": "a\\u0000b", "expected": "cats"}', "line 2: the query contains NUL (\\u0000) characters"),
        ('{"query": "where", "expected": "\\ud800"}', "line 2: the expected is not valid Unicode"),
        ("[" * 3000 + "]" * 3000, "line 2: JSON nested more than 32 levels deep"),
        ('{"query": 1' + "0" * 5000 + "}", "line 2: an integer of 5001 digits is out of range"),
    ],
)
def test_import_refuses_a_bad_line_naming_it_and_writes_nothing(hash_collection, tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GOLDEN[0]) + "\n" + line + "\n")
    with pytest.raises(CommandError, match="line 2"):
        call_command("import_golden_queries", str(path), collection="hashes")
    try:
        call_command("import_golden_queries", str(path), collection="hashes")
    except CommandError as exc:
        assert message in str(exc)
    assert not GoldenQuery.objects.exists()


def test_import_refuses_what_is_not_a_file_of_text_lines_at_once(hash_collection, tmp_path):
    """/dev/zero held 11 GB within 20 s; a FIFO waited for ever for a writer."""
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    invalid = tmp_path / "latin1.jsonl"
    invalid.write_bytes(b'{"query": "caf\xe9", "expected": "cats"}\n')
    for path, message in (
        ("/dev/zero", "a character device, not a regular file"),
        (fifo, "a FIFO (named pipe), not a regular file"),
        (invalid, "line 1: not UTF-8 text (invalid byte at offset 14)"),
        (tmp_path, "a folder, not a regular file"),
    ):
        with pytest.raises(CommandError, match=re.escape(message)):
            call_command("import_golden_queries", str(path), collection="hashes")
    assert not GoldenQuery.objects.exists()


def test_import_names_a_missing_file_or_collection(hash_collection, tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_golden_queries", str(tmp_path / "none.jsonl"), collection="hashes")
    with pytest.raises(CommandError, match="no collection named 'nope'"):
        call_command("import_golden_queries", str(tmp_path / "none.jsonl"), collection="nope")


@pytest.mark.django_db
def test_evaluation_scores_golden_queries_with_the_local_model_and_stores_history(topics, golden_file):
    # The page one query expects is not in the collection: said at import and at every evaluation.
    warning = (
        "warning: golden queries of topics expect 1 document(s) it does not hold (missing-page); they can "
        "never be found: fix their expected_document_id or enqueue the documents"
    )
    err = StringIO()
    call_command("import_golden_queries", str(golden_file), collection="topics", stdout=StringIO(), stderr=err)
    assert err.getvalue().strip() == warning
    out = StringIO()
    call_command("evaluate_retrieval", collection="topics", json=True, stdout=out)
    figures = json.loads(out.getvalue())
    # Three of four questions find their page first; the fourth's page is not in the collection.
    assert figures == {
        "collection": "topics",
        "mode": "hybrid",  # the collection's search mode
        "queries": 4,
        "recall_at_1": 0.75,
        "recall_at_5": 0.75,
        "recall_at_10": 0.75,
        "mrr_at_10": 0.75,
        "ndcg_at_10": 0.75,
        "unknown_answers": ["missing-page"],
    }
    run = RetrievalEvaluation.objects.get()
    assert (run.collection, run.trigger, run.configuration["model"]) == (topics, "command", "local/all-MiniLM-L6-v2")
    text, err = StringIO(), StringIO()
    call_command("evaluate_retrieval", collection="topics", mode="keyword", stdout=text, stderr=err)
    assert "topics (keyword, 4 queries)" in text.getvalue() and "recall_at_5" in text.getvalue()
    assert err.getvalue().strip() == warning
    assert RetrievalEvaluation.objects.count() == 2, "every evaluation is kept as history"


def test_evaluating_without_golden_queries_is_a_command_error(hash_collection):
    with pytest.raises(CommandError, match="has no golden queries; import some first"):
        call_command("evaluate_retrieval", collection="hashes")
    with pytest.raises(CommandError, match="no collection named"):
        call_command("evaluate_retrieval", collection="nope")


@pytest.mark.django_db
def test_api_runs_an_evaluation_and_lists_the_history(topics):
    for g in GOLDEN[:3]:
        GoldenQuery.objects.create(collection=topics, query=g["query"], expected_document_id=g["expected"])
    url = "/api/v1/collections/topics/evaluations/"
    runner = client_with("add_retrievalevaluation", "view_retrievalevaluation")
    created = runner.post(url, {}, format="json")
    assert created.status_code == 201, created.content
    assert (created.json()["recall_at_1"], created.json()["trigger"], created.json()["queries"]) == (1.0, "api", 3)
    listed = client_with("view_retrievalevaluation").get(url)
    assert [row["recall_at_5"] for row in listed.json()["results"]] == [1.0], "a page, as every list is"
    assert listed.json()["count"] == 1
    assert (
        "permission pipeline.add_retrievalevaluation"
        in error_of(client_with("view_retrievalevaluation").post(url, {}, format="json"), 403)["message"]
    )
    assert error_of(runner.post(url, {"mode": "telepathy"}, format="json"), 400)
    assert error_of(runner.get("/api/v1/collections/nope/evaluations/"), 404)


def test_api_evaluation_without_golden_queries_is_a_400(hash_collection):
    response = client_with("add_retrievalevaluation").post("/api/v1/collections/hashes/evaluations/", format="json")
    message = "collection 'hashes' has no golden queries; import some first"
    assert error_of(response, 400) == {"status": 400, "message": message, "details": {"non_field_errors": [message]}}


def test_golden_queries_written_through_the_api_are_the_ones_evaluated(api, hash_collection):
    response = api.post(
        "/api/v1/embedding-pipeline-operations/golden-queries/",
        {"collection": "hashes", "query": "where are cats", "expected_document_id": "cats"},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert hash_collection.golden_queries.get().expected_document_id == "cats"
    again = api.post(
        "/api/v1/embedding-pipeline-operations/golden-queries/",
        {"collection": "hashes", "query": "where are cats", "expected_document_id": "dogs"},
        format="json",
    )
    assert error_of(again, 400)["message"] == (
        "the collection has this query already: change that golden query's expected_document_id instead"
    )


@pytest.mark.django_db(transaction=True)  # the failed insert ends its transaction, as in production
def test_a_golden_query_another_request_sends_meanwhile_is_a_409_not_a_500(api, hash_collection, monkeypatch):
    """Four concurrent POSTs of one query answered 201, 500, 400, 400: the validator's look and the
    insert are not one step. The loser's answer is a conflict naming the row."""
    validated = GoldenQuerySerializer.validate

    def then_another_request_writes_it(self, attrs):
        attrs = validated(self, attrs)
        GoldenQuery.objects.create(**attrs)  # committed between the validation and the insert
        return attrs

    monkeypatch.setattr(GoldenQuerySerializer, "validate", then_another_request_writes_it)
    body = {"collection": "hashes", "query": "where are cats", "expected_document_id": "cats"}
    response = api.post("/api/v1/embedding-pipeline-operations/golden-queries/", body, format="json")
    message = error_of(response, 409)["message"]
    assert message.startswith("another request created the same meanwhile: Key (collection_id, query)=("), message
    assert hash_collection.golden_queries.count() == 1


def test_admin_lists_golden_queries_and_evaluations(admin_client, hash_collection):
    GoldenQuery.objects.create(collection=hash_collection, query="where are cats", expected_document_id="cats")
    RetrievalEvaluation.objects.create(
        collection=hash_collection,
        mode="vector",
        queries=1,
        recall_at_1=0.5,
        recall_at_5=1,
        recall_at_10=1,
        mrr_at_10=0.75,
        ndcg_at_10=0.8,
    )
    golden = admin_client.get("/admin/pipeline/goldenquery/")
    assert "where are cats" in golden.content.decode()
    history = admin_client.get("/admin/pipeline/retrievalevaluation/")
    assert history.status_code == 200 and "0.75" in history.content.decode()
    assert admin_client.get("/admin/pipeline/retrievalevaluation/add/").status_code == 403


def test_the_admin_slo_page_shows_each_collections_retrieval_quality_against_its_target(admin_client, hash_collection):
    figures = dict(recall_at_1=0.5, recall_at_10=1, mrr_at_10=0.6, ndcg_at_10=0.7, queries=10)
    RetrievalEvaluation.objects.create(collection=hash_collection, mode="hybrid", recall_at_5=0.85, **figures)
    page = admin_client.get("/admin/pipeline/collection/slos/").content.decode()
    row = page.split('id="quality-hashes"')[1].split("</tr>")[0]
    assert "0.85" in row and "0.9" in row and "missed" in row
