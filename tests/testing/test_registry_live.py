"""The registry inside CI: every scenario against a live worker process on the test database."""

from __future__ import annotations

import pytest

from testing.choices import Outcome
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
