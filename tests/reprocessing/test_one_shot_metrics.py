"""The reprocessing and staleness passes run in one-shot CronWorkflow pods that nothing scrapes and
that exit: what they count must reach Prometheus through the long-lived processes it does scrape."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from pipeline.choices import DocumentStatus, ErrorType, Stage
from pipeline.models import Document
from reprocessing.models import FailedDocument
from tests.conftest import manage, wait_for
from tests.grafana.test_dashboard_queries import Prometheus, app_env, prom, web  # noqa: F401 (fixtures)


def due_failures(collection, n: int) -> None:
    past = timezone.now() - timedelta(hours=1)
    for i in range(n):
        document = Document.objects.create(
            collection=collection, external_id=f"f{i}", text="text", content_hash=f"{i:064}",
            status=DocumentStatus.FAILED,
        )  # fmt: skip
        FailedDocument.objects.create(
            document=document, error_type=ErrorType.RATE_LIMIT, stage=Stage.EMBEDDING, first_failed_at=past,
            last_failed_at=past, next_retry_at=past,
        )  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_one_shot_passes_counts_reach_a_prometheus_scraping_only_the_web(hash_collection, prom, app_env):  # noqa: F811
    due_failures(hash_collection, 3)
    # As the CronWorkflows run them: separate processes that exit; Prometheus scrapes only the web.
    for command in ("reprocess_failed", "detect_stale", "reprocess_failed"):
        assert manage(command, env=app_env).wait(timeout=120) == 0

    def exported(expr: str) -> float | None:
        result = prom.query(expr)
        return float(result[0]["value"][1]) if result else None

    wait_for(lambda: exported("embedding_pipeline_reprocessing_pass_seconds_count") == 2, timeout=30)
    assert exported("embedding_pipeline_staleness_pass_seconds_count") == 1
    assert exported('pipeline_reprocessing_total{reason="rate_limit"}') == 3
    # Every reason is exported from the start (0), so rate() has a series before the first requeue.
    assert exported('pipeline_reprocessing_total{reason="stale"}') == 0
    assert exported('embedding_pipeline_reprocessing_pass_seconds_bucket{le="+Inf"}') == 2
