"""Builders the dashboards share: the datasource variable, a query, plain panels."""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.builders.common import ReduceDataOptions
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.models.dashboard import DataSourceRef

# Every panel reads the Prometheus chosen in the dashboard's `datasource` variable.
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")


def query(ref: str, expr: str, legend: str) -> Dataquery:
    return Dataquery().ref_id(ref).expr(expr).legend_format(legend).datasource(DS)


def plain_timeseries(title: str, description: str, unit: str, span: int) -> timeseries.Panel:
    return timeseries.Panel().title(title).description(description).datasource(DS).unit(unit).span(span).height(8)


def last_value_stat(title: str, description: str, unit: str, span: int = 6) -> stat.Panel:
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
