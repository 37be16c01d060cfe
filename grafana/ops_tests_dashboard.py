"""The operations test results dashboard, as code (grafana-foundation-sdk, Grafana 11.6 schema).

Separate from the pipeline health dashboard (grafana/dashboard.py), so either can be built alone:
`python -m grafana.ops_tests_dashboard PATH` writes the JSON. Panels: pass rate over time (overall
and per category), scenario durations (p95), failing and flaky scenarios, coverage, last runs.
The metrics come from the database at scrape time, the same from every replica: max(), not sum().
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.builders.common import ReduceDataOptions
from grafana_foundation_sdk.builders.dashboard import Dashboard, DatasourceVariable, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
RESULTS = "test_pass_rate_embedding_pipeline_operations_total"


def per_scenario(result: str, window: str) -> str:
    """Results of one kind per scenario over a window (replicas report the same counts: max)."""
    return f"sum by (category, scenario) (max without (instance, pod) (increase({RESULTS}{{{result}}}[{window}]))) > 0"


def _q(ref: str, expr: str, legend: str, instant: bool = False) -> Dataquery:
    query = Dataquery().ref_id(ref).expr(expr).legend_format(legend).datasource(DS)
    return query.instant() if instant else query


def _ts(title: str, description: str, unit: str, span: int = 12) -> timeseries.Panel:
    return timeseries.Panel().title(title).description(description).datasource(DS).unit(unit).span(span).height(8)


def _stat(title: str, description: str, unit: str, span: int = 6) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .span(span)
        .height(5)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def build() -> Dashboard:
    return (
        Dashboard("Embedding pipeline operations tests")
        .uid("embedportal-ops-tests")
        .tags(["embedportal", "ops-tests"])
        .refresh("1m")
        .time("now-7d", "now")
        .with_variable(DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_row(Row("Now"))
        .with_panel(
            _stat("Pass rate (6 h)", "Passed or flaky results over non-skipped ones.", "percentunit").with_target(
                _q("A", "embedding_pipeline_operations:test_pass_rate:ratio6h", "pass rate")
            )
        )
        .with_panel(
            _stat("Coverage", "Component x condition cells with a scenario run in 7 days.", "percentunit").with_target(
                _q("A", "max(test_coverage_ratio)", "coverage")
            )
        )
        .with_panel(
            _stat("Flaky scenarios", "Flagged flaky in the last 14 days.", "none").with_target(
                _q("A", "max(test_flaky_scenarios)", "flaky")
            )
        )
        .with_panel(
            _stat("Since the last scheduled run", "The alert fires past 2 hours.", "s").with_target(
                _q("A", 'time() - max(test_last_run_timestamp_seconds{trigger="schedule"})', "age")
            )
        )
        .with_row(Row("Trends"))
        .with_panel(
            _ts("Pass rate by category", "Recording rule over the results counter.", "percentunit").with_target(
                _q("A", "embedding_pipeline_operations:test_pass_rate_by_category:ratio6h", "{{category}}")
            )
        )
        .with_panel(
            _ts("Scenario duration p95", "From the duration histogram, per category.", "s").with_target(
                _q(
                    "A",
                    "histogram_quantile(0.95, sum by (category, le) "
                    "(max without (instance, pod) (rate(test_duration_seconds_bucket[6h]))))",
                    "{{category}}",
                )
            )
        )
        .with_row(Row("Scenarios"))
        .with_panel(
            table.Panel()
            .title("Failing scenarios (24 h)")
            .description("Failed or errored results per scenario over the last day.")
            .datasource(DS)
            .span(12)
            .height(8)
            .with_target(
                _q(
                    "A",
                    per_scenario('result=~"failed|error"', "24h"),
                    "{{scenario}}",
                    instant=True,
                )
            )
        )
        .with_panel(
            table.Panel()
            .title("Passed only on retry (14 d)")
            .description("Flaky results per scenario; the admin's flaky list ranks them by flip rate.")
            .datasource(DS)
            .span(12)
            .height(8)
            .with_target(
                _q(
                    "A",
                    per_scenario('result="flaky"', "14d"),
                    "{{scenario}}",
                    instant=True,
                )
            )
        )
    )


def render() -> str:
    return json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    out = render()
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(out)
    else:
        sys.stdout.write(out)
