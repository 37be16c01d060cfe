"""Scrape-time metrics of each suite's latest benchmark run, from the database (notes: docs/benchmarks.md)."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily

from embedportal.collectors import DatabaseCollector
from testing.benchmarks import stages
from testing.models import BenchmarkRun

RESULT = "performance_benchmark_result_embedding_pipeline_operations"
REGRESSION = "performance_benchmark_regression_embedding_pipeline_operations"
LAST_RUN = "performance_benchmark_last_run_timestamp_seconds"


class BenchmarkCollector(DatabaseCollector):
    subject = "benchmark"

    def families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        labels = ["benchmark", "figure", "suite"]
        flagged = "1 if the suite's latest run flagged the figure as a regression."
        return (
            GaugeMetricFamily(RESULT, "Median of a benchmark figure in the suite's latest run.", labels=labels),
            GaugeMetricFamily(REGRESSION, flagged, labels=labels),
            GaugeMetricFamily(LAST_RUN, "Start of the suite's latest benchmark run.", labels=["suite"]),
        )

    def fill(self, cur, result, regression, last) -> None:
        latest = BenchmarkRun.objects.order_by("suite", "-started_at").distinct("suite")
        for run in latest.only("suite", "started_at", "results", "comparison"):
            last.add_metric([run.suite], run.started_at.timestamp())
            for benchmark, figures in run.results.items():
                for name, data in figures.items():
                    if stages.exported(data):
                        result.add_metric([benchmark, name, run.suite], float(data["median"]))
                        flagged = run.comparison.get(benchmark, {}).get(name, {}).get("verdict") == "regression"
                        regression.add_metric([benchmark, name, run.suite], 1.0 if flagged else 0.0)
