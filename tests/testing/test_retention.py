"""Retention: old test and benchmark runs are pruned daily, never the running one, and the test
counters on /metrics keep counting what was pruned (they read running totals, not the results)."""

from __future__ import annotations

from datetime import timedelta
from importlib import import_module

import pytest
from django.apps import apps
from django.db import connection
from django.utils import timezone

from testing import tasks
from testing.collectors import DatabaseCollector
from testing.flaky import flaky_names
from testing.models import BenchmarkRun, ScenarioTotals, ScenarioVersion, TestResult, TestRun
from tests.factories import benchmark_run
from tests.factories import stored_result as record

pytestmark = pytest.mark.django_db


def counters() -> dict[tuple, float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in DatabaseCollector().collect()
        if family.name.startswith(("test_pass_rate", "test_duration"))
        for s in family.samples
    }


def test_pruning_keeps_recent_and_running_runs_and_the_counters(settings):
    settings.EMBEDPORTAL_TEST_RUN_RETENTION_DAYS = 90
    settings.EMBEDPORTAL_BENCHMARK_RETENTION_DAYS = 365
    record("canary_embedded_and_found", "passed", ago=timedelta(days=120), duration=0.3)
    record("canary_embedded_and_found", "failed", ago=timedelta(days=120), duration=45.0)
    recent = record("canary_embedded_and_found", "passed", ago=timedelta(days=2), duration=2.0)
    running = TestRun.objects.start(trigger="cli")
    TestRun.objects.filter(pk=running.pk).update(started_at=timezone.now() - timedelta(days=200))
    benchmark_run(timezone.now() - timedelta(days=400), "v0", {}, "m")
    kept_benchmark = benchmark_run(timezone.now() - timedelta(days=30), "v1", {}, "m")
    before = counters()

    assert tasks.prune_history() == {"test_rows": 4, "benchmark_runs": 1}  # 2 runs, their 2 results

    assert list(TestResult.objects.all()) == [recent]
    assert set(TestRun.objects.values_list("pk", flat=True)) == {recent.run_id, running.pk}
    assert list(BenchmarkRun.objects.all()) == [kept_benchmark]
    after = counters()
    assert (
        after == before
        and after[("test_duration_seconds_count", (("category", "normal"), ("scenario", "canary_embedded_and_found")))]
        == 3
    )


def test_the_migration_starts_the_summaries_from_the_results_already_stored():
    for outcome, duration in (("passed", 0.05), ("passed", 7.0), ("failed", 900.0)):
        run = TestRun.objects.create(
            trigger="cli", status="passed", started_at=timezone.now(), heartbeat_at=timezone.now()
        )
        TestResult.objects.create(
            run=run, scenario="s", category="normal", component="search", outcome=outcome,
            started_at=timezone.now(), duration_seconds=duration,
        )  # fmt: skip
    ScenarioTotals.objects.all().delete()
    ScenarioVersion.objects.all().delete()
    import_module("testing.migrations.0003_squashed_0007_benchmark_suite_workload").summarise_existing_results(
        apps, connection.schema_editor()
    )
    passed = ScenarioTotals.objects.get(outcome="passed")
    # Buckets 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, +Inf: 0.05 in the first, 7.0 in the sixth.
    assert (passed.results, passed.duration_buckets) == (2, [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0])
    assert ScenarioTotals.objects.get(outcome="failed").duration_buckets[-1] == 1
    # One code version with a pass and a failure: flaky, as flaky_scenarios() reads the results.
    assert flaky_names(timezone.now() - timedelta(days=1)) == {"s"}
