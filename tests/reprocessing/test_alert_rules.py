"""The failure alert rules: valid for Prometheus, unit-tested with promtool, and complete."""

from __future__ import annotations

import re

import yaml

from pipeline.choices import ErrorType
from tests.tools import RULES


def alerts() -> list[dict]:
    groups = yaml.safe_load((RULES / "failures.rules.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_alerts_follow_the_naming_and_annotation_conventions():
    for rule in alerts():
        assert re.fullmatch(r"EmbeddingPipeline(?:[A-Z][a-z]+|SLA)+", rule["alert"]), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])


def test_every_failure_type_and_the_freshness_sla_have_an_alert():
    exprs = " ".join(rule["expr"] for rule in alerts())
    # Empty documents are a producer's input problem, unknown errors are caught by the error-rate panels.
    expected = set(ErrorType.values) - {ErrorType.EMPTY_DOCUMENT, ErrorType.UNKNOWN}
    assert {t for t in expected if t not in exprs} == set()
    assert "pipeline_stale_documents_count" in exprs and "pipeline_dead_letter_documents" in exprs
