"""The helpers that read what the app reads and exports must find what they claim to."""

from __future__ import annotations

from tests.deploy import app_facts


def test_promql_names_skip_functions_labels_windows_and_keywords() -> None:
    expr = (
        'sum by (stage) (rate(embedding_pipeline_latency_seconds_bucket{le="30", job=~"x.+"}[5m]))'
        " / on (stage) group_left sum(rate(other_total[1h] offset 5m)) > 0.5"
        ' and absent(up{job="embedding-web"}) unless job:ratio:rate5m'
    )
    assert app_facts.promql_metric_names(expr) == {
        "embedding_pipeline_latency_seconds_bucket",
        "other_total",
        "up",
        "job:ratio:rate5m",
    }
    assert app_facts.app_metric_names_in(expr) == {"embedding_pipeline_latency_seconds_bucket"}


def test_settings_env_names_include_secret_file_variants() -> None:
    names = app_facts.settings_env_names()
    assert {"DATABASE_URL", "DATABASE_URL_FILE", "DJANGO_SECRET_KEY_FILE", "Q_WORKERS", "DJANGO_ALLOWED_HOSTS"} <= names
    assert "DJANGO_DEBUG_FILE" not in names  # env_bool, not env_secret


def test_exported_metric_names_expand_counters_and_histograms() -> None:
    names = app_facts.exported_metric_names()
    # pipeline.metrics: a Counter and a Histogram, as Prometheus sees their series.
    assert "embedding_pipeline_errors_total" in names
    assert {"embedding_pipeline_latency_seconds_bucket", "embedding_pipeline_latency_seconds_count"} <= names
    assert "embedding_pipeline_errors" not in names
