"""Scrape-time metrics of each suite's latest benchmark run, from the database (notes: docs/benchmarks.md)."""

from __future__ import annotations

from embedportal import collectors
from testing.benchmarks import stages
from testing.models import BenchmarkRun

RESULT = "performance_benchmark_result_embedding_pipeline_operations"
REGRESSION = "performance_benchmark_regression_embedding_pipeline_operations"
LAST_RUN = "performance_benchmark_last_run_timestamp_seconds"
LABELS = ["benchmark", "figure", "suite"]


class BenchmarkCollector(collectors.DatabaseCollector):
    subject = "benchmark"

    families = collectors.fresh(
        (RESULT, "Median of a benchmark figure in the suite's latest run.", LABELS),
        (REGRESSION, "1 if the suite's latest run flagged the figure as a regression.", LABELS),
        (LAST_RUN, "Start of the suite's latest benchmark run.", ["suite"]),
    )

    def fill(self, cur, result, regression, last) -> None:
        latest = BenchmarkRun.objects.order_by("suite", "-started_at").distinct("suite")
        for run in latest.only("suite", "started_at", "results", "comparison"):
            last.add_metric([run.suite], run.started_at.timestamp())
            for benchmark, figures in run.results.items():
                for name, data in figures.items():
                    if not stages.is_informational(data) or data.get("quantile") == stages.EXPORTED_QUANTILE:
                        result.add_metric([benchmark, name, run.suite], float(data["median"]))
                        flagged = run.comparison.get(benchmark, {}).get(name, {}).get("verdict") == "regression"
                        regression.add_metric([benchmark, name, run.suite], 1.0 if flagged else 0.0)
