"""The performance dashboard, as code (grafana-foundation-sdk, Grafana 11.6 schema); its rows are
in docs/performance.md ("The Grafana performance dashboard"). Database-derived series (capacity,
compliance, benchmarks) are the same from every replica: max()."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import AnnotationQuery, Dashboard

from grafana.panels import DS, dashboard_files, frame, last_value_stat, query, series_panel, table_panel, with_rows

LATENCY = "embedding_pipeline_latency_seconds_bucket"
RESULT = "performance_benchmark_result_embedding_pipeline_operations"
REGRESSION = "performance_benchmark_regression_embedding_pipeline_operations"
COMPLIANCE = "performance_slo_compliance_embedding_pipeline_operations"
QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
# The ingest benchmarks' informational per-stage figures (testing.benchmarks.stages exports their p95).
STAGE_P95 = ".+_p95_s"


def _p95(buckets: str) -> str:
    return f"histogram_quantile(0.95, sum by (le) (rate({buckets}[$__rate_interval])))"


def stages_row() -> list:
    return [
        *(
            series_panel(
                f"Per-document {name} by stage",
                f"{name} seconds per document in each stage (chunking, embedding, storage, total), from the latency "
                "histogram's buckets (linear interpolation inside a bucket).",
                "s",
                8,
            ).with_target(
                query(
                    "A", f"histogram_quantile({q}, sum by (le, stage) (rate({LATENCY}[$__rate_interval])))", "{{stage}}"
                )
            )
            for name, q in QUANTILES
        ),
        series_panel(
            "Stage utilisation",
            "Busy seconds per second per worker in each stage: near 1 is the bottleneck (as the optimizer reads it).",
            "percentunit",
        ).with_target(
            query(
                "A",
                "sum by (stage) (rate(embedding_pipeline_stage_busy_seconds_total[$__rate_interval])) "
                "/ scalar(max(embedding_pipeline_workers_alive))",
                "{{stage}}",
            )
        ),
        series_panel("Queue wait and search p95", "Enqueued to claimed, and one search call.", "s")
        .with_target(query("A", _p95("embedding_pipeline_queue_wait_seconds_bucket"), "queue wait p95"))
        .with_target(query("B", _p95("embedding_pipeline_search_seconds_bucket"), "search p95")),
    ]


def throughput_row() -> list:
    return [
        series_panel(
            "Throughput against capacity",
            "Documents embedded per second, and the sustained docs/s measure_capacity measured at the deployed "
            "worker count: the gap is the headroom.",
            "none",
            span=24,
        )
        .with_target(
            query(
                "A",
                'sum(rate(embedding_pipeline_documents_processed_total{outcome="embedded"}[$__rate_interval]))',
                "embedded docs/s",
            )
        )
        .with_target(query("B", "max by (model) (embedding_pipeline_capacity_docs_per_second)", "capacity {{model}}")),
    ]


def slo_row() -> list:
    return [
        last_value_stat(
            "SLO compliance now", "Share of events within each performance SLO's target.", "percentunit", 8
        ).with_target(query("A", f"max by (slo) ({COMPLIANCE})", "{{slo}}")),
        series_panel(
            "SLO compliance over time", "performance_slo_compliance by SLO (0..1).", "percentunit", 16
        ).with_target(query("A", f"max by (slo) ({COMPLIANCE})", "{{slo}}")),
    ]


def benchmarks_row() -> list:
    return [
        *(
            series_panel(
                f"Benchmark history ({suite} suite)",
                f"Median of each figure in the latest {suite} run (manage.py benchmark): a step is a change in "
                "performance; regressions are marked by the annotations and the panel below.",
                "none",
            ).with_target(
                query(
                    "A",
                    f'max by (benchmark, figure) ({RESULT}{{suite="{suite}", figure!~"{STAGE_P95}"}})',
                    "{{benchmark}} {{figure}}",
                )
            )
            for suite in ("quick", "full")
        ),
        series_panel(
            "Regressions flagged",
            "1 while the suite's latest run flags the figure (t-test limit and at least 5% worse than the "
            "same machine's history); the admin's Benchmark runs list dates it.",
            "none",
        ).with_target(
            query("A", f"max by (benchmark, figure, suite) ({REGRESSION}) > 0", "{{suite}} {{benchmark}} {{figure}}")
        ),
        table_panel(
            "Latest figures",
            "Every figure of the latest run of each suite, with its regression flag.",
            query("A", f"max by (suite, benchmark, figure) ({RESULT})", "{{figure}}"),
        ),
        # Last in the last row: the ids of the panels before it stay as they were.
        series_panel(
            "Benchmark per-stage p95 (informational)",
            "Per-document p95 seconds of each stage in the ingest benchmarks' latest run (median of its "
            "repetitions; the admin's Trends page charts p50/p95/p99). Not gated: never flagged.",
            "s",
            span=24,
        ).with_target(
            query(
                "A",
                f'max by (suite, benchmark, figure) ({RESULT}{{figure=~"{STAGE_P95}"}})',
                "{{suite}} {{benchmark}} {{figure}}",
            )
        ),
    ]


def build() -> Dashboard:
    dashboard = frame(
        "Embedding pipeline performance",
        "embedportal-performance",
        "Where the pipeline's time goes, its throughput against capacity, SLOs and benchmark history.",
        "performance",
        "now-7d",
        "1m",
        "Prometheus",
    ).annotation(
        AnnotationQuery()
        .name("Benchmark regressions")
        .datasource(DS)
        .enable(True)
        .icon_color("red")
        .expr(f"max({REGRESSION}) > 0")
    )
    rows = (
        ("Stages", stages_row()),
        ("Throughput", throughput_row()),
        ("SLOs", slo_row()),
        ("Benchmarks", benchmarks_row()),
    )
    return with_rows(dashboard, rows)


OUTPUT, CONFIGMAP, render, render_configmap = dashboard_files(
    build, "performance.json", "grafana-dashboard-performance.yaml", "embedportal-grafana-dashboards-performance"
)
