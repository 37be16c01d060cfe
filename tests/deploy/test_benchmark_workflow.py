"""The benchmark CronWorkflow: the full suite nightly, and the same workflow submitted for a release."""

from __future__ import annotations

import pytest

from testing.choices import BenchmarkSuite, BenchmarkTrigger
from tests.deploy.render import OVERLAY_NAMES, one, render_overlay


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_the_full_benchmark_suite_runs_nightly_with_a_trigger_a_release_can_set(overlay: str) -> None:
    spec = one(render_overlay(overlay), "CronWorkflow", "embedportal-benchmark")["spec"]
    assert spec["schedules"] == ["10 3 * * *"] and spec["concurrencyPolicy"] == "Forbid"
    workflow = spec["workflowSpec"]
    [parameter] = workflow["arguments"]["parameters"]
    assert parameter == {"name": "trigger", "value": BenchmarkTrigger.SCHEDULE}
    assert BenchmarkTrigger.RELEASE in BenchmarkTrigger.values  # `argo submit --from cronwf/... -p trigger=release`
    [template] = workflow["templates"]
    container = template["container"]
    assert container["command"] == ["embedportal"]
    args = container["args"]
    assert args[:3] == ["benchmark", "--suite", BenchmarkSuite.FULL]
    assert args[3:] == ["--trigger", "{{workflow.parameters.trigger}}"]
    assert "--no-fail" not in args, "a regression must fail the workflow"
    # Only a lost pod is retried: a regression (exit 3) is the result.
    assert template["retryStrategy"]["retryPolicy"] == "OnError"
    assert container["resources"]["requests"]["cpu"] == "2"
