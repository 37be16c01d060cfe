"""The registry inside CI: every scenario against a live worker process on the test database."""

from __future__ import annotations

import logging

import pytest

from testing.choices import Outcome
from testing.logs import SkipOpsTestBadRequests
from testing.registry import REGISTRY
from testing.reserved import reserved_collections
from testing.tester import EmbeddingPipelineOperationsTester

# Skipped is a legitimate outcome for these here: no operator registered golden queries.
MAY_SKIP = {"regression_operator_golden_queries"}


@pytest.mark.parametrize("name", list(REGISTRY))
def test_scenario_passes_on_the_healthy_system(live_worker, name: str) -> None:
    run = EmbeddingPipelineOperationsTester(scenarios=[name]).run()
    (result,) = run.results.all()
    allowed = {Outcome.PASSED, Outcome.SKIPPED} if name in MAY_SKIP else {Outcome.PASSED}
    assert result.outcome in allowed, f"{name}: {result.outcome}: {result.message}"
    assert not reserved_collections().exists(), "the scenario left its reserved collections behind"


def test_the_ops_tests_deliberate_bad_requests_stay_out_of_the_log_and_a_clients_do_not(live_worker, client):
    skips = lambda h: any(isinstance(f, SkipOpsTestBadRequests) for f in h.filters)  # noqa: E731
    handler = next(h for h in logging.getLogger().handlers if skips(h))
    emitted: list[logging.LogRecord] = []
    handler.emit = emitted.append  # type: ignore[method-assign] -- emit runs only for records the filters pass
    try:
        run = EmbeddingPipelineOperationsTester(scenarios=["producer_api_contract"]).run()
        assert run.results.get().outcome == Outcome.PASSED
        assert [r.getMessage() for r in emitted if r.name == "django.request"] == []
        client.get("/api/v1/collections/no-such-collection/")
    finally:
        del handler.emit
    assert [(r.levelname, r.getMessage()) for r in emitted if r.name == "django.request"] == [
        ("WARNING", "Unauthorized: /api/v1/collections/no-such-collection/")
    ]
