"""The operations test results dashboard, as code (docs/ops-tests.md, "Metrics, dashboard and
alerts"). Windows are hours, not $__rate_interval: the quick suite runs hourly, so shorter windows
hold no result; database gauges are the same from every replica: max(), not sum()."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from grafana.panels import dashboard_files, frame, last_value_stat, query, series_panel, table_panel, with_rows

RESULTS = "test_pass_rate_embedding_pipeline_operations_total"


def per_scenario(result: str, window: str) -> str:
    """Results of one kind per scenario over a window (replicas report the same counts: max)."""
    return f"sum by (category, scenario) (max without (instance, pod) (increase({RESULTS}{{{result}}}[{window}]))) > 0"


def now_row() -> list:
    return [
        last_value_stat("Pass rate (6 h)", "Passed or flaky results over non-skipped ones.", "percentunit").with_target(
            query("A", "embedding_pipeline_operations:test_pass_rate:ratio6h", "pass rate")
        ),
        last_value_stat(
            "Coverage", "Component x condition cells with a scenario run in 7 days.", "percentunit"
        ).with_target(query("A", "max(test_coverage_ratio)", "coverage")),
        last_value_stat("Flaky scenarios", "Flagged flaky in the last 14 days.", "none").with_target(
            query("A", "max(test_flaky_scenarios)", "flaky")
        ),
        last_value_stat("Since the last scheduled run", "The alert fires past 2 hours.", "s").with_target(
            query("A", 'time() - max(test_last_run_timestamp_seconds{trigger=~"schedule-.*"})', "age")
        ),
    ]


def trends_row() -> list:
    return [
        series_panel("Pass rate by category", "Recording rule over the results counter (6 h windows).", "percentunit")
        .with_target(query("A", "embedding_pipeline_operations:test_pass_rate:ratio6h", "all"))
        .with_target(query("B", "embedding_pipeline_operations:test_pass_rate_by_category:ratio6h", "{{category}}")),
        series_panel(
            "Scenario duration p95", "From the duration histogram, per category (6 h windows).", "s"
        ).with_target(
            query(
                "A",
                "histogram_quantile(0.95, sum by (category, le) "
                "(max without (instance, pod) (rate(test_duration_seconds_bucket[6h]))))",
                "{{category}}",
            )
        ),
        series_panel(
            "Coverage over time",
            "Share of the component x condition matrix run in the trailing 7 days (admin: Coverage matrix).",
            "percentunit",
        ).with_target(query("A", "max(test_coverage_ratio)", "coverage")),
        series_panel(
            "Flaky scenarios over time",
            "Scenarios that passed only on retry, or both passed and failed on one code version and "
            "configuration, in 14 days (admin: Flaky scenarios).",
            "none",
        ).with_target(query("A", "max(test_flaky_scenarios)", "flaky")),
    ]


def scenarios_row() -> list:
    return [
        table_panel(
            "Failing scenarios (24 h)",
            "Failed or errored results per scenario over the last day.",
            query("A", per_scenario('result=~"failed|error"', "24h"), "{{scenario}}"),
        ),
        table_panel(
            "Passed only on retry (14 d)",
            "Flaky results per scenario; the admin's flaky list ranks them by flip rate.",
            query("A", per_scenario('result="flaky"', "14d"), "{{scenario}}"),
        ),
    ]


def build() -> Dashboard:
    dashboard = frame(
        "Embedding pipeline operations tests",
        "embedportal-ops-tests",
        "Operations tests against the live pipeline: pass rate, durations, failing and flaky, coverage.",
        "ops-tests",
        "now-7d",
        "1m",
        "Prometheus",
    )
    return with_rows(dashboard, (("Now", now_row()), ("Trends", trends_row()), ("Scenarios", scenarios_row())))


OUTPUT, CONFIGMAP, render, render_configmap = dashboard_files(
    build, "ops-tests.json", "grafana-dashboard-ops-tests.yaml", "embedportal-grafana-dashboards-ops-tests"
)
