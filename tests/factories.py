"""Rows several tests build the same way."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from pipeline.collections import create_collection
from pipeline.models import CapacityMeasurement, Collection
from testing.benchmarks import regression, stages, suite
from testing.choices import RunStatus
from testing.models import BenchmarkRun, ScenarioTotals, TestResult, TestRun


def capacity_measurement(model: str = "local/hash-16", **fields: Any) -> CapacityMeasurement:
    """A measure_capacity result of 2 workers at 8.5 docs/s (100 documents of 4,000 characters)."""
    return CapacityMeasurement.objects.create(
        **{
            "model": model,
            "measured_at": timezone.now(),
            "documents": 100,
            "chars_per_document": 4000,
            "points": [{"workers": 2, "docs_per_second": 8.5, "documents": 100, "chunks": 300, "seconds": 10}],
            **fields,
        }
    )


def fake_backed(name: str, api_base: str, **fields: Any) -> Collection:
    """A collection embedded over real HTTP by a local fake provider (8 dims) at `api_base`."""
    return create_collection(
        **{
            "name": name,
            "model": "openai/fake-embedder",
            "api_base": api_base,
            "api_key_env": "FAKE_PROVIDER_KEY",
            "dimensions": 8,
            "chunk_unit": "characters",
            "chunk_size": 200,
            "chunk_overlap": 0,
            "batch_size": 4,
            # The provider sees the chunk text itself, which tests compare with what they sent
            # (tests/pipeline/test_contextual_chunks.py covers contextual chunks).
            "contextual_chunks": False,
            **fields,
        }
    )


# Benchmark history: search p95 steps up at run STEP_AT.
NOISE = [0.1, -0.08, 0.05, -0.1, 0.07, 0.0, -0.04, 0.09, 0.02, -0.06, 0.08, -0.03]
STEP_AT = 8


def admin_collection_form(team: int, api_base: str, api_key_env: str, **fields: Any) -> dict[str, Any]:
    """The admin's add-collection form for a remote model at `api_base` with the key in `api_key_env`."""
    return {
        "name": "exfil",
        "team": team,
        "model": "openai/x",
        "api_base": api_base,
        "api_key_env": api_key_env,
        "extra_params": "{}",
        "chunking_strategy": "recursive",
        "chunk_unit": "characters",
        "chunk_size": 200,
        "chunk_overlap": 20,
        "batch_size": 64,
        "freshness_sla": "01:00:00",
        **fields,
    }


def benchmark_run(when, version: str, results: dict, machine: str, suite_name: str = "quick") -> BenchmarkRun:
    """A run stored the way `manage.py benchmark` stores it: compared with the history before it."""
    run = BenchmarkRun(
        suite=suite_name,
        started_at=when,
        duration_seconds=1.0,
        code_version=version,
        machine_fingerprint=machine,
        results=results,
    )
    run.comparison = regression.compare(run, regression.history(machine, suite_name, before=when))
    run.regressions = len(regression.regressions(run.comparison))
    run.save()
    return run


def step_history(machine: str = "m") -> list[BenchmarkRun]:
    """Twelve quick runs: search p95 steps from 10 ms to 13 ms at run 8; ingest stays flat."""
    start = timezone.now() - timedelta(days=30)
    runs = []
    for i, noise in enumerate(NOISE):
        p95 = 10.0 if i < STEP_AT else 13.0
        results = {
            "search": {"p95_ms": suite.figure([p95 + noise, p95 - noise, p95 + noise / 2], "lower", "ms")},
            "ingest_steady": {"docs_per_second": suite.figure([100 + noise, 100 - noise, 100.0], "higher", "docs/s")},
        }
        runs.append(benchmark_run(start + timedelta(days=i), f"commit-{i}", results, machine))
    return runs


def repetition(storage_p95: float) -> dict[str, dict[str, float]]:
    """One repetition's percentiles: every stage 0.1/0.2/0.3 s except storage's p95."""
    per_stage = {s: {"p50": 0.1, "p95": 0.2, "p99": 0.3} for s in stages.STAGES}
    per_stage["storage"] = {"p50": 0.1, "p95": storage_p95, "p99": max(0.3, storage_p95)}
    return per_stage


def stage_results(docs_per_second: list[float], storage_p95: list[float]) -> dict:
    """A run's results: ingest_steady at these docs/s, one repetition per storage p95."""
    return {
        "ingest_steady": {
            "docs_per_second": suite.figure(docs_per_second, "higher", "docs/s"),
            **suite.stage_figures([repetition(v) for v in storage_p95]),
        }
    }


def stage_history(machine: str = "m", runs: int = 6) -> list[BenchmarkRun]:
    """Quick runs whose storage p95 grows 0.2 s, 0.3 s, ... (never flagged) at a steady docs/s."""
    start = timezone.now() - timedelta(days=runs)
    return [
        benchmark_run(
            start + timedelta(days=i), f"commit-{i}", stage_results([100.0, 101.0], [0.2 + i / 10] * 2), machine
        )
        for i in range(runs)
    ]


def stored_result(
    scenario: str,
    outcome: str,
    *,
    code: str = "v1",
    config: str = "c1",
    ago: timedelta = timedelta(0),
    category="normal",
    component="search",
    duration=1.0,
    message="",
    target="",
):
    """A result stored the way the tester stores it (with its run, counted in the summaries)."""
    started = timezone.now() - ago
    run = TestRun.objects.create(
        trigger="schedule-django-q",
        status=RunStatus.PASSED,
        started_at=started,
        heartbeat_at=started,
        finished_at=started,
        code_version=code,
        config_fingerprint=config,
    )
    result = TestResult.objects.create(
        run=run,
        scenario=scenario,
        category=category,
        component=component,
        outcome=outcome,
        started_at=started,
        duration_seconds=duration,
        message=message,
        target=target,
    )
    ScenarioTotals.objects.add(result)  # as the tester counts every result it stores
    return result
