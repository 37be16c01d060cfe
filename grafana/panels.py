"""Builders the dashboards share: the frame with its datasource variable, a query, plain panels."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.builders.common import ReduceDataOptions
from grafana_foundation_sdk.builders.dashboard import Dashboard, DatasourceVariable, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.models.dashboard import DataSourceRef

# Every panel reads the Prometheus chosen in the dashboard's `datasource` variable.
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")


def frame(title: str, uid: str, description: str, tag: str, since: str, refresh: str, datasource: str) -> Dashboard:
    """A dashboard with the house tags and time zone, and the `datasource` variable DS reads."""
    return (
        Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["embedportal", tag])
        .time(since, "now")
        .refresh(refresh)
        .timezone("browser")
        .with_variable(DatasourceVariable("datasource").label(datasource).type("prometheus"))
    )


def query(ref: str, expr: str, legend: str) -> Dataquery:
    return Dataquery().ref_id(ref).expr(expr).legend_format(legend).datasource(DS)


def plain_timeseries(title: str, description: str, unit: str, span: int) -> timeseries.Panel:
    return timeseries.Panel().title(title).description(description).datasource(DS).unit(unit).span(span).height(8)


def last_value_stat(title: str, description: str, unit: str, span: int = 6, height: int = 5) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DS)
        .unit(unit)
        .span(span)
        .height(height)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def with_rows(dashboard: Dashboard, rows: Iterable[tuple[str, list]]) -> Dashboard:
    """Each row titled, then its panels; ids are fixed by position so links to a panel
    (viewPanel=N) survive regeneration."""
    ids = itertools.count(1)
    for title, panels in rows:
        dashboard = dashboard.with_row(Row(title).id(next(ids)))
        for panel in panels:
            dashboard = dashboard.with_panel(panel.id(next(ids)))
    return dashboard
