"""Scrape-time metrics of operations test runs, from the database (runs happen in a command's
pod, a django-q2 worker or the web process: only the database sees them all)
(notes: docs/ops-tests.md, "Module notes")."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from embedportal import collectors

PASS_RATE = "test_pass_rate_embedding_pipeline_operations"
DURATION = "test_duration_seconds"
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

_COUNTS_SQL = """
SELECT category, scenario, outcome, count(*) FROM testing_testresult GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
_DURATION_SQL = (
    "SELECT category, scenario, count(*), sum(duration_seconds), "
    + ", ".join(f"count(*) FILTER (WHERE duration_seconds <= {b})" for b in DURATION_BUCKETS)
    + " FROM testing_testresult GROUP BY 1, 2 ORDER BY 1, 2"
)
_LAST_RUN_SQL = """
SELECT DISTINCT ON (trigger) trigger, extract(epoch FROM started_at), status
  FROM testing_testrun WHERE status <> 'running' ORDER BY trigger, started_at DESC
"""


class DatabaseCollector(collectors.DatabaseCollector):
    subject = "testing"

    def families(self) -> list[Metric]:
        return [
            CounterMetricFamily(
                PASS_RATE,
                "Operations test results by category, scenario and result (passed, failed, error, skipped, "
                "flaky); pass rate = rate(result=~passed|flaky) / rate(all but skipped).",
                labels=["category", "scenario", "result"],
            ),
            HistogramMetricFamily(
                DURATION, "Seconds an operations test scenario took.", labels=["category", "scenario"]
            ),
            GaugeMetricFamily(
                "test_last_run_timestamp_seconds",
                "Start of the last finished test run, by trigger.",
                labels=["trigger"],
            ),
            GaugeMetricFamily(
                "test_last_run_passed", "1 if the last finished run passed, by trigger.", labels=["trigger"]
            ),
            GaugeMetricFamily("test_coverage_ratio", "Share of component x condition cells run in the last 7 days."),
            GaugeMetricFamily("test_flaky_scenarios", "Scenarios flagged flaky in the last 14 days."),
        ]

    def fill(self, cur, counter, histogram, last_time, last_passed, cover_gauge, flaky_gauge) -> None:
        from testing.coverage import coverage
        from testing.flaky import flaky_scenarios

        cur.execute(_COUNTS_SQL)
        for category, scenario, outcome, n in cur.fetchall():
            counter.add_metric([category, scenario, outcome], n)
        cur.execute(_DURATION_SQL)
        for category, scenario, n, total, *cumulative in cur.fetchall():
            buckets = [(str(float(b)), c) for b, c in zip(DURATION_BUCKETS, cumulative, strict=True)] + [("+Inf", n)]
            histogram.add_metric([category, scenario], buckets, total or 0.0)
        cur.execute(_LAST_RUN_SQL)
        for trigger, started, status in cur.fetchall():
            last_time.add_metric([trigger], float(started))
            last_passed.add_metric([trigger], 1.0 if status == "passed" else 0.0)
        cover_gauge.add_metric([], coverage().ratio)
        flaky_gauge.add_metric([], len(flaky_scenarios()))
