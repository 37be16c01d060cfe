"""The pipeline health dashboard, as code (grafana-foundation-sdk, Grafana 11.6 schema); its panels,
variables and files are in docs/slos.md ("The Grafana dashboard"). Gauges computed from the
database are the same from every replica: max(), not sum()."""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, stat, timeseries
from grafana_foundation_sdk.builders.common import GraphThresholdsStyleConfig, ReduceDataOptions, VizLegendOptions
from grafana_foundation_sdk.builders.dashboard import Dashboard, QueryVariable, ThresholdsConfig
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from grafana.panels import DS, base_panel, dashboard_files, frame, last_value_stat, query, series_panel, with_rows
from grafana.slo_rules import ON_SLO

COLLECTION = 'collection=~"$collection"'
CAPACITY = "max(embedding_pipeline_capacity_docs_per_second)"


def _steps(*steps: tuple[float | None, str]) -> ThresholdsConfig:
    return ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps([Threshold(value=v, color=c) for v, c in steps])


# A reference line (capacity, a bound, a target): dashed and red.
DASHED = [
    DynamicConfigValue(id_val="custom.lineStyle", value=common.LineStyle(fill="dash", dash=[10, 10])),
    DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"}),
]


def _timeseries(title: str, description: str, unit: str, span: int = 12) -> timeseries.Panel:
    legend = VizLegendOptions().display_mode(common.LegendDisplayMode.LIST).placement(common.LegendPlacement.BOTTOM)
    return series_panel(title, description, unit, span).legend(legend.show_legend(True)).line_width(1).fill_opacity(10)


def _chart(title: str, description: str, unit: str, *targets: Dataquery, span: int = 12) -> timeseries.Panel:
    panel = _timeseries(title, description, unit, span).min(0)
    for target in targets:
        panel = panel.with_target(target)
    return panel


def _stat(title: str, description: str, unit: str, span: int = 8) -> stat.Panel:
    return last_value_stat(title, description, unit, span, height=6)


def _per_collection(ref: str, metric: str, legend: str, matchers: str = "") -> Dataquery:
    """The gauge's value per selected collection (every replica reports the same: max)."""
    return query(ref, f"max by (collection) ({metric}{{{matchers}{COLLECTION}}})", legend)


def _rate(by: str, metric: str) -> str:
    """The counter's rate summed `by` labels, over the selected collections."""
    return f"sum by ({by}) (rate({metric}{{{COLLECTION}}}[$__rate_interval]))"


def health_panels() -> list:
    """The six panels the mission names, and the reprocessing queue's age."""
    latency = f"rate(embedding_pipeline_latency_seconds_bucket{{{COLLECTION}}}[$__rate_interval])"
    judged = "sum by (collection) (rate(embedding_pipeline_freshness_judged_total{%s}[$__rate_interval]))"
    within = "100 * " + judged % (COLLECTION + ',within_sla="true"') + "\n/ (" + judged % COLLECTION + " > 0)"
    return [
        _chart(
            "Pipeline Throughput",
            "Documents of the selected collections finishing a pipeline attempt per minute, by outcome, against "
            "the measured capacity "
            "(manage.py measure_capacity for the deployed worker count and model; no line until measured).",
            "suffix: docs/min",
            query("A", _rate("outcome", "embedding_pipeline_documents_processed_total") + " * 60", "{{outcome}}"),
            query("B", f"{CAPACITY} * 60", "capacity"),
        ).override_by_name("capacity", DASHED),
        _chart(
            "Queue Depth",
            "Pending documents (backoff included) in all and in the selected collections. The bound is what "
            "the measured capacity drains within the 1 h freshness objective: a queue above it breaks the SLO.",
            "short",
            query("A", "max(embedding_pipeline_queue_depth)", "pending (all)"),
            _per_collection("B", "embedding_pipeline_collection_queue_depth", "{{collection}}"),
            query("C", f"{CAPACITY} * 3600", "bound (1 h of capacity)"),
        ).override_by_name("bound (1 h of capacity)", DASHED),
        _chart(
            "Processing Latency",
            "Seconds per document of the selected collections in each stage (a document shares its batch's time) "
            "and in total (stage=total: claim to commit), as p50, p95 and p99 over the rate interval.",
            "s",
            *(
                query(ref, f"histogram_quantile({q}, sum by (le, stage) ({latency}))", f"{{{{stage}}}} p{name}")
                for ref, q, name in (("A", "0.5", "50"), ("B", "0.95", "95"), ("C", "0.99", "99"))
            ),
        ),
        _chart(
            "Error Rate",
            "Pipeline errors per second by collection and type; every failed try counts, in-batch retries "
            "included (documents that fail for good are the Failures SLO's, below).",
            "suffix: errors/s",
            query(
                "A",
                _rate("collection, error_type", "embedding_pipeline_errors_total"),
                "{{collection}}: {{error_type}}",
            ),
        ),
        _timeseries(
            "Freshness SLA",
            "Percentage of documents embedded within their collection's own freshness SLA of their source "
            "update, per selected collection over the rate interval, and over all collections over 30 days "
            "(the Freshness SLO, objective 99%). Right axis: documents past their collection's freshness SLA "
            "and not re-embedded yet, per selected collection.",
            "percent",
            span=8,
        )
        .max(100)
        .thresholds(_steps((None, "red"), (99, "green")))
        .thresholds_style(GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED))
        .with_target(query("A", within, "within SLA: {{collection}}"))
        .with_target(
            query("B", '100 * (1 - slo:sli_error:ratio_rate30d{sloth_slo="freshness"})', "within SLA (all, 30 d)")
        )
        .with_target(_per_collection("C", "pipeline_stale_documents_count", "stale: {{collection}}"))
        .override_by_query(
            "C",
            [
                DynamicConfigValue(id_val="custom.axisPlacement", value=common.AxisPlacement.RIGHT),
                DynamicConfigValue(id_val="unit", value="short"),
                DynamicConfigValue(id_val="max", value=None),
            ],
        ),
        _chart(
            "Reprocessing Queue",
            "Failed documents waiting for their next retry (backoff 5 min, 30 min, 2 h, 24 h) or being "
            "retried, and those dead-lettered for an operator. Their age is in Reprocessing Queue Age.",
            "short",
            query("A", "sum by (state) (max by (state, error_type) (pipeline_reprocessing_queue_size))", "{{state}}"),
            query("B", "sum(max by (error_type) (pipeline_dead_letter_documents))", "dead-lettered"),
            span=8,
        ),
        base_panel(
            bargauge.Panel(),
            "Reprocessing Queue Age",
            "Documents in the reprocessing queue by time since their first failure (upper bound, s).",
            "short",
            span=8,
        )
        .min(0)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        # A gauge histogram's buckets are cumulative counts now: no rate(); the heatmap format
        # turns them into per-bucket counts.
        .with_target(
            query("A", "max by (le) (pipeline_reprocessing_queue_age_seconds_bucket)", "{{le}}")
            .format(PromQueryFormat.HEATMAP)
            .instant()
        ),
    ]


def slo_row() -> list:
    return [
        _stat(
            "SLI (30 d)",
            "Share of good events over 30 days per SLO (freshness 99%, failures 99.9%, latency 95%); "
            "no value without traffic.",
            "percentunit",
        )
        .decimals(3)
        .with_target(query("A", "1 - slo:sli_error:ratio_rate30d", "{{sloth_slo}}")),
        _stat(
            "Error budget left (30 d)",
            "1 - errors / budget over 30 days; below 0 the SLO is missed for the period.",
            "percentunit",
        )
        .thresholds(_steps((None, "red"), (0, "orange"), (0.25, "green")))
        .with_target(query("A", "slo:period_error_budget_remaining:ratio", "{{sloth_slo}}")),
        _chart(
            "Burn rate",
            "Error ratio / budget over 5 m and 1 h per SLO. 1 spends the budget in exactly 30 days; "
            "pages at 14.4 (1 h and 5 m) and 6 (6 h and 30 m).",
            "x",
            query("A", "slo:current_burn_rate:ratio", "{{sloth_slo}} 5m"),
            query("B", f"slo:sli_error:ratio_rate1h\n/ {ON_SLO} slo:error_budget:ratio", "{{sloth_slo}} 1h"),
            span=8,
        )
        .thresholds(_steps((None, "green"), (6, "orange"), (14.4, "red")))
        .thresholds_style(GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)),
    ]


def capacity_row() -> list:
    return [
        _chart(
            "Capacity",
            "Arrivals (completions + queue growth, 1 h), their daily peak and completions against the "
            "measured capacity, in docs/s.",
            "suffix: docs/s",
            query("A", "embedding_pipeline:arrivals_docs_per_second:rate1h", "arrivals"),
            query("B", "embedding_pipeline:arrivals_docs_per_second:peak1d", "daily peak of arrivals"),
            query("C", "embedding_pipeline:completions_docs_per_second:rate1h", "completions"),
            query("D", CAPACITY, "capacity"),
        ).override_by_name("capacity", DASHED),
        _stat(
            "Headroom",
            "1 - daily peak of arrivals / capacity: the share of capacity free at the busiest hour.",
            "percentunit",
            span=4,
        )
        .thresholds(_steps((None, "red"), (0.1, "orange"), (0.3, "green")))
        .with_target(query("A", "embedding_pipeline:capacity_headroom:ratio", "headroom")),
        _stat(
            "Capacity measurement age",
            "Time since manage.py measure_capacity last measured; alerted past 30 days.",
            "s",
            span=8,
        )
        .thresholds(_steps((None, "green"), (30 * 86400, "red")))
        .with_target(
            query("A", "time() - max(embedding_pipeline_capacity_measured_timestamp_seconds)", "measured ago")
        ),
        _chart(
            "Arrivals projection (14 d)",
            "predict_linear of the daily peak of arrivals over 7 days, 14 days ahead (needs 3 days of "
            "history), against capacity: crossing it raises EmbeddingPipelineCapacityExhaustionProjected.",
            "suffix: docs/s",
            query("A", "embedding_pipeline:arrivals_docs_per_second:predicted14d", "peak arrivals in 14 d"),
            query("B", CAPACITY, "capacity"),
            span=24,
        ).override_by_name("capacity", DASHED),
    ]


def cost_row() -> list[timeseries.Panel]:
    return [
        _chart(
            "Embedding cost this month",
            "US dollars spent embedding this calendar month (UTC) per selected collection, its projection at "
            "the last 6 hours' pace, and its monthly budget (dashed): a projection over the budget raises "
            "EmbeddingPipelineCostBudgetBurn.",
            "currencyUSD",
            _per_collection("A", "embedding_pipeline_cost_month_usd", "{{collection}}"),
            _per_collection("B", "embedding_pipeline_cost_month_projected_usd", "{{collection}} projected"),
            _per_collection("C", "embedding_pipeline_cost_budget_usd", "{{collection}} budget"),
        ),
        _chart(
            "Embedding spend rate",
            "US dollars per hour spent embedding, per selected collection (LiteLLM's prices; local models: 0).",
            "currencyUSD",
            query("A", _rate("collection", "embedding_pipeline_cost_usd_total") + " * 3600", "{{collection}}"),
        ),
    ]


def quality_row() -> list:
    quality = "embedding_pipeline_retrieval_quality"
    return [
        _chart(
            "Retrieval quality",
            "Each collection's latest golden-query evaluation in its search mode (manage.py evaluate_retrieval, "
            "daily schedule): recall@5 against the collection's target (dashed; the retrieval quality SLO) and MRR@10.",
            "percentunit",
            _per_collection("A", quality, "{{collection}} recall@5", 'metric="recall_at_5", '),
            _per_collection("B", quality, "{{collection}} MRR@10", 'metric="mrr_at_10", '),
            _per_collection("C", "embedding_pipeline_retrieval_target", "{{collection}} target"),
            span=24,
        )
        .max(1)
        .override_by_query("C", DASHED),
    ]


def build() -> Dashboard:
    dashboard = frame(
        "Embedding pipeline health",
        "embedportal-pipeline-health",
        "Embedding pipeline: throughput, queue, latency, errors, freshness, reprocessing, SLOs, capacity.",
        "embedding-pipeline",
        "now-6h",
        "30s",
        "Data source",
    ).with_variable(
        QueryVariable("collection")
        .label("Collection")
        .datasource(DS)
        .query("label_values(embedding_pipeline_collection_queue_depth, collection)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(VariableOption(selected=True, text="All", value="$__all"))
    )
    rows = (
        ("SLO compliance", slo_row()),
        ("Capacity planning", capacity_row()),
        ("Cost", cost_row()),
        ("Retrieval quality", quality_row()),
    )
    return with_rows(dashboard, rows, top=health_panels())


OUTPUT, CONFIGMAP, render, render_configmap = dashboard_files(
    build, "pipeline-health.json", "grafana-dashboard.yaml", "embedportal-grafana-dashboards"
)
