"""Monitoring as code: the SLO spec, the Prometheus rules and the Grafana dashboard generated from it.

`python -m grafana` (make dashboards / make rules) rewrites every generated file; `--check` only
reports the stale ones. Not part of the deployed application.
"""
