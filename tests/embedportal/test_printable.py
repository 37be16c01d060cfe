"""Tenant text where it comes back out as plain text (an injection red team): a model string or a
provider's error with CR/LF forged server log lines, ESC sequences rewrote an operator's terminal
(check_health showed PASS over a FAIL), control characters made the JUnit file unparseable for CI,
and a bidi override showed a document id in reverse. Identifiers refuse control and formatting
characters; logs, commands and XML escape them."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from embedportal.printable import PrintableFormatter, printable
from pipeline.choices import ErrorType, WorkerRole
from pipeline.embedding import PipelineError, embed_texts
from pipeline.models import Collection, ProviderCircuit, WorkerHeartbeat, rules
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from testing.choices import RunStatus, Trigger
from testing.junit import run_to_junit
from testing.models import TestResult, TestRun
from tests.pipeline.test_optimizer import embedding_bound
from tests.tools import error_of, parse_metrics
from tokens.models import ApiToken

pytestmark = pytest.mark.django_db

FORGED = "bad input\r\n2026-12-07 15:00:00,000 ERROR django.security FORGED\x1b[31mRED\x1b]0;title\x07 \u202eexe.pdf"


def test_a_logged_text_is_one_line_and_a_traceback_keeps_only_its_line_breaks():
    handler = next(h for h in logging.getLogger().handlers if isinstance(h.formatter, PrintableFormatter))
    record = logging.LogRecord("pipeline.failures", logging.WARNING, __file__, 1, "failed: %s", (FORGED,), None)
    line = handler.format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line and "\u202e" not in line
    assert line.endswith("failed: bad input\\r\\n2026-12-07 15:00:00,000 ERROR django.security FORGED\\x1b[31mRED"
                         "\\x1b]0;title\\x07 \\u202eexe.pdf")  # fmt: skip
    try:
        raise ValueError(FORGED)
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "search failed", (), sys.exc_info())
    text = handler.format(record)
    assert text.count("\n") >= 3 and "\r" not in text and "\x1b" not in text and "\x07" not in text
    # A line break in the exception's message stays (messages may span lines) but starts no record.
    assert all(line.startswith("  ") for line in text.splitlines()[1:]), text
    assert text.splitlines()[-2:] == ["  ValueError: bad input\\r", f"  {printable(FORGED.split(chr(10))[1])}"]


@pytest.mark.parametrize(
    "bad",
    # A line separator splits a log record for str.splitlines(); a Hangul filler draws as nothing.
    ["openai/x\r\nforged", "openai/\x1b[2Jx", "openai/\u202ex", "openai/a\u200bb", "openai/a\u2028b", "openai/x\u3164"],
)
def test_a_model_string_with_a_control_or_formatting_character_is_refused(api, bad):
    body = {"name": "evil", "model": bad, "dimensions": 8, "api_base": "http://127.0.0.1:9/v1"}
    details = error_of(api.post("/api/v1/collections/", body, format="json"), 400)["details"]
    assert details["model"][0].startswith("holds a control or formatting character"), details
    body = {"name": "rerank", "model": "local/hash-16", "dimensions": 16, "rerank_model": bad}
    details = error_of(api.post("/api/v1/collections/", body, format="json"), 400)["details"]
    assert details["rerank_model"][0].startswith("holds a control or formatting character"), details
    assert not Collection.objects.exists()


def test_a_model_string_is_a_model_name_not_a_sentence_for_the_alert_texts(api, hash_collection):
    """EmbeddingPipelineCircuitOpenTooLong read "The circuit of openai/URGENT: rotate your key at ... has
    been open for 10 minutes" to whoever was on call: the model string is the alert's endpoint label."""
    sentence = "openai/URGENT: rotate your key at evil.example"
    body = {"name": "evil", "model": sentence, "dimensions": 8, "api_base": "http://127.0.0.1:9/v1"}
    details = error_of(api.post("/api/v1/collections/", body, format="json"), 400)["details"]
    assert details["model"] == ["holds ' ': a model name has letters, digits and . _ : / @ + = - only"]
    body = {"rerank_model": "cohere/rerank v3 CALL +1 555 0100"}
    assert list(error_of(api.patch("/api/v1/collections/hashes/", body, format="json"), 400)["details"]) == [
        "rerank_model"
    ]
    with pytest.raises(CommandError, match="a model name has letters"):
        call_command("create_collection", "evil", model=sentence, dimensions=8, stdout=StringIO())
    # Names providers use pass; one stored before the rule keeps working until a re-embed sets another.
    for model in ("ollama/nomic-embed-text:latest", "huggingface/BAAI/bge-small-en-v1.5", "vertex_ai/te-004@001"):
        assert rules.model_name_problem(model) is None
    Collection.objects.filter(pk=hash_collection.pk).update(model="local/hash-16 (old)")
    hash_collection.refresh_from_db()
    hash_collection.full_clean()
    hash_collection.model = "local/hash 8"
    with pytest.raises(ValidationError, match="a model name has letters"):
        hash_collection.full_clean()
    assert Collection.objects.count() == 1


def test_a_golden_querys_expected_id_and_a_token_name_refuse_them_too(api, hash_collection, admin_user, tmp_path):
    body = {"collection": "hashes", "query": "where are the cats", "expected_document_id": "id\x1b[31mX"}
    url = "/api/v1/embedding-pipeline-operations/golden-queries/"
    details = error_of(api.post(url, body, format="json"), 400)["details"]
    assert details["expected_document_id"][0].startswith("holds a control or formatting character ('\\x1b' at 2)")
    body = {"collection": "hashes", "query": "cats \u202e?siht", "expected_document_id": "cats"}
    details = error_of(api.post(url, body, format="json"), 400)["details"]
    assert details["query"][0] == "holds a control or formatting character ('\\u202e' at 5); remove it"
    lines = tmp_path / "golden.jsonl"
    lines.write_text(json.dumps({"query": "where are the cats", "expected": "cats\u202e"}) + "\n")
    with pytest.raises(CommandError, match=r"line 1: the expected holds a control or formatting character"):
        call_command("import_golden_queries", str(lines), collection="hashes", stdout=StringIO())
    with pytest.raises(CommandError, match=r"--name holds a control or formatting character \('\\n' at 2\)"):
        call_command("create_api_token", admin_user.username, name="ci\nforged", stdout=StringIO())
    # The admin's forms too.
    admin = Client()
    admin.force_login(admin_user)
    form = {"collection": hash_collection.pk, "query": "where are the cats", "expected_document_id": "cats\u202e"}
    page = admin.post("/admin/pipeline/goldenquery/add/", form).content.decode()
    assert "holds a control or formatting character (&#x27;\\u202e&#x27; at 4)" in page
    form = {"name": "ci\x1b[2Jx", "scope": "read", "days": 5, "_save": "Save"}
    page = admin.post("/admin/tokens/apitoken/add/", form).content.decode()
    assert "holds a control or formatting character (&#x27;\\x1b&#x27; at 2)" in page
    assert not hash_collection.golden_queries.exists() and not ApiToken.objects.exists()


def test_a_providers_error_text_is_escaped_once_for_every_sink():
    # evaluate_retrieval printed "embedding a query failed: {exc}" raw: a tenant's api_base answering an
    # error with ESC sequences took over the operator's terminal (the red team's second round).
    error = PipelineError("bad_request", "embedding", "bad\r\n2026-12-07 ERROR forged\x1b[2J\u2028x")
    assert str(error) == "bad_request: bad\\r\\n2026-12-07 ERROR forged\\x1b[2J\\u2028x"


def test_gunicorns_own_log_lines_are_escaped_too():
    # Its access log wrote a header's C1 controls (\x85 NEL, \x9b CSI) raw: any client could forge a record.
    script = (
        "from gunicorn.config import Config; from gunicorn import glogging; from embedportal import gunicorn_conf\n"
        "c = Config(); c.set('logconfig_dict', gunicorn_conf.logconfig_dict); c.set('accesslog', '-')\n"
        "log = glogging.Logger(c)\n"
        "log.access_log.info('GET / ua=\\x852026 CRITICAL forged\\x9b2J'); log.error('e\\x85f')"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout == "GET / ua=\\x852026 CRITICAL forged\\x9b2J\n"
    assert done.stderr.rstrip().endswith("[ERROR] e\\x85f") and done.stderr.count("\n") == 1


def test_junit_escapes_what_xml_cannot_hold_and_stays_parseable():
    run = TestRun.objects.start(trigger="cli")
    TestResult.objects.create(
        run=run, scenario="model_upstream_answers", category="integration", component="provider",
        outcome="failed", started_at=timezone.now(), duration_seconds=1.0, message=f"openai/x failed: {FORGED}\nmore",
    )  # fmt: skip
    root = ET.fromstring(run_to_junit(run).tostring())
    failure = root.find(".//failure")
    assert failure.get("message") == "openai/x failed: bad input\\r"
    assert "\\x1b[31mRED\\x1b]0;title\\x07 \\u202eexe.pdf\nmore" in failure.text


def test_check_health_and_search_print_a_stored_text_escaped(hash_collection, fake_provider, fake_collection):
    # A row stored before the rule; its probe fails and the reason quotes the model string.
    Collection.objects.filter(pk=fake_collection.pk).update(model="openai/x\x1b[2K\r\x1b[32mPASS")
    fake_provider.mode = "401"
    out = StringIO()
    with pytest.raises(CommandError, match="unhealthy: model"):
        call_command("check_health", check=["model"], stdout=out)
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()
    assert "openai/x\\x1b[2K\\r\\x1b[32mPASS" in out.getvalue()
    # A producer's document text, shown by a search in an operator's terminal.
    enqueue(hash_collection, [IncomingDocument("zebra.md", "zebra quartz \x1b[2J\x1b[Hall good\x1b[8m hidden")])
    EmbeddingIngestionPipeline().drain()
    call_command("search", "zebra quartz", collection="hashes", mode="keyword", stdout=(out := StringIO()))
    assert "zebra quartz \\x1b[2J\\x1b[Hall good\\x1b[8m hidden" in out.getvalue() and "\x1b" not in out.getvalue()


TERMINAL = "\x1b[2J\u202e"  # clears the screen; shows what follows reversed


def test_run_test_runner_prints_a_runs_message_escaped(fake_provider, fake_collection):
    # A model string stored before the rule; the run's message (its benchmark not run: the circuit is open)
    # quotes it, and the runner's report of the run printed it raw.
    Collection.objects.filter(pk=fake_collection.pk).update(model=f"openai/x{TERMINAL}")
    fake_collection.refresh_from_db()
    ProviderCircuit.objects.record_failure(fake_collection, ErrorType.TIMEOUT, 1, timedelta(seconds=60))
    WorkerHeartbeat.objects.beat(WorkerRole.WORKER, worker="elsewhere:1")  # a live worker: the run goes on
    selection = {"scenarios": ["metrics_used_by_rules_and_dashboards_exist"], "collections": ["fake"]}
    run = TestRun.objects.start(
        RunStatus.QUEUED, trigger=Trigger.CONFIG_CHANGE, selection={**selection, "benchmark": True}
    )

    call_command("run_test_runner", once=True, stdout=(out := StringIO()))

    assert f"Run {run.pk}: passed" in out.getvalue()
    assert "the provider circuit of fake (openai/x\\x1b[2J\\u202e) is open" in out.getvalue()
    assert "\x1b" not in out.getvalue() and "\u202e" not in out.getvalue()


def test_optimize_prints_collection_names_escaped(hash_collection):
    # A name written around its slug rule; the per-collection line and the recommendations quote it.
    Collection.objects.filter(pk=hash_collection.pk).update(name=f"hashes{TERMINAL}")
    hash_collection.refresh_from_db()
    embedding_bound(hash_collection)

    call_command("optimize", stdout=(out := StringIO()))

    assert "  hashes\\x1b[2J\\u202e: 120 documents" in out.getvalue()
    assert "- Raise the embedding batch size of hashes\\x1b[2J\\u202e to 32 [--apply]" in out.getvalue()
    assert "\x1b" not in out.getvalue() and "\u202e" not in out.getvalue()


def test_a_provider_prefix_litellm_does_not_know_is_one_metric_series(client, fake_provider, fake_collection):
    for prefix in ("madeup", "other2"):
        Collection.objects.filter(pk=fake_collection.pk).update(model=f"{prefix}/x")
        fake_collection.refresh_from_db()
        with pytest.raises(PipelineError):
            embed_texts(fake_collection, ["t"])
    m = parse_metrics(client.get("/metrics").content.decode())
    providers = {
        dict(labels)["provider"] for name, labels in m if name == "embedding_pipeline_provider_call_seconds_count"
    }
    assert "other" in providers and not {"madeup", "other2"} & providers
