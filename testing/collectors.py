"""Scrape-time metrics of operations test runs, from the database: only it sees every runner's runs."""

from __future__ import annotations

import itertools

from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from embedportal import collectors
from testing.coverage import coverage
from testing.flaky import WINDOW, flaky_names
from testing.models import ACTIVE, DURATION_BUCKETS, RunnerHeartbeat, ScenarioTotals, TestRun

PASS_RATE = "test_pass_rate_embedding_pipeline_operations"
DURATION = "test_duration_seconds"


class DatabaseCollector(collectors.DatabaseCollector):
    subject = "testing"

    families = collectors.fresh(
        (
            PASS_RATE,
            "Operations test results by category, scenario and result (passed, failed, error, skipped, "
            "flaky); pass rate = rate(result=~passed|flaky) / rate(all but skipped).",
            ["category", "scenario", "result"],
            CounterMetricFamily,
        ),
        (DURATION, "Seconds an operations test scenario took.", ["category", "scenario"], HistogramMetricFamily),
        ("test_last_run_timestamp_seconds", "Start of the last finished test run, by trigger.", ["trigger"]),
        ("test_last_run_passed", "1 if the last finished run passed, by trigger.", ["trigger"]),
        ("test_coverage_ratio", "Share of component x condition cells run in the last 7 days.", []),
        ("test_flaky_scenarios", "Scenarios flagged flaky in the last 14 days.", []),
        ("test_runners_alive", "Test runner processes (run_test_runner) alive; 0: queued runs wait.", []),
    )

    def fill(self, cur, counter, histogram, last_time, last_passed, cover_gauge, flaky_gauge, runners) -> None:
        # The running totals (ScenarioTotals), not every result: tens of rows, and pruned results still count.
        totals = ScenarioTotals.objects.order_by("category", "scenario", "outcome")
        durations: dict[tuple[str, str], tuple[float, list[int]]] = {}
        fields = ("category", "scenario", "outcome", "results", "duration_seconds", "duration_buckets")
        for category, scenario, outcome, n, seconds, buckets in totals.values_list(*fields):
            counter.add_metric([category, scenario, outcome], n)
            total, counts = durations.get((category, scenario), (0.0, [0] * len(buckets)))
            durations[(category, scenario)] = (total + seconds, [a + b for a, b in zip(counts, buckets, strict=True)])
        for (category, scenario), (total, counts) in durations.items():
            cumulative = list(itertools.accumulate(counts))
            bounds = [str(float(b)) for b in DURATION_BUCKETS] + ["+Inf"]
            histogram.add_metric([category, scenario], list(zip(bounds, cumulative, strict=True)), total)
        last = TestRun.objects.exclude(status__in=ACTIVE).order_by("trigger", "-started_at").distinct("trigger")
        for trigger, started, status in last.values_list("trigger", "started_at", "status"):
            last_time.add_metric([trigger], started.timestamp())
            last_passed.add_metric([trigger], 1.0 if status == "passed" else 0.0)
        cover_gauge.add_metric([], coverage().ratio)
        flaky_gauge.add_metric([], len(flaky_names(timezone.now() - WINDOW)))
        runners.add_metric([], RunnerHeartbeat.objects.alive().count())
