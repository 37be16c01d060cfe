"""Scrape-time benchmark metrics from the database (runs happen in a command's pod or a django-q2
worker: only the database sees them all). From the latest run of each suite:

- `performance_benchmark_result_embedding_pipeline_operations{benchmark,figure,suite}`: the median;
- `performance_benchmark_regression_embedding_pipeline_operations{benchmark,figure,suite}`: 1 if flagged;
- `performance_benchmark_last_run_timestamp_seconds{suite}`.

Of the ingest benchmarks' informational per-stage figures only the p95 is exported (`storage_p95_s`,
...: five figure values), never flagged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db import DatabaseError, transaction
from prometheus_client.core import GaugeMetricFamily, Metric

from testing.benchmarks import stages
from testing.models import BenchmarkRun

logger = logging.getLogger(__name__)

RESULT = "performance_benchmark_result_embedding_pipeline_operations"
REGRESSION = "performance_benchmark_regression_embedding_pipeline_operations"
LAST_RUN = "performance_benchmark_last_run_timestamp_seconds"


class BenchmarkCollector:
    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        labels = ["benchmark", "figure", "suite"]
        return (
            GaugeMetricFamily(RESULT, "Median of a benchmark figure in the suite's latest run.", labels=labels),
            GaugeMetricFamily(
                REGRESSION, "1 if the suite's latest run flagged the figure as a regression.", labels=labels
            ),
            GaugeMetricFamily(LAST_RUN, "Start of the suite's latest benchmark run.", labels=["suite"]),
        )

    def collect(self) -> Iterator[Metric]:
        try:
            with transaction.atomic():
                runs = list(
                    BenchmarkRun.objects.order_by("suite", "-started_at")
                    .distinct("suite")
                    .only("suite", "started_at", "results", "comparison")
                )
        except DatabaseError:
            logger.exception("benchmark metrics: database query failed")
            return
        result, regression, last = self._families()
        for run in runs:
            last.add_metric([run.suite], run.started_at.timestamp())
            for benchmark, figures in run.results.items():
                for name, data in figures.items():
                    if not stages.exported(data):
                        continue
                    result.add_metric([benchmark, name, run.suite], float(data["median"]))
                    flagged = run.comparison.get(benchmark, {}).get(name, {}).get("verdict") == "regression"
                    regression.add_metric([benchmark, name, run.suite], 1.0 if flagged else 0.0)
        yield from (result, regression, last)
