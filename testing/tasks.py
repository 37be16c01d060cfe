"""django-q2 tasks that queue operations test runs for the test runner, never running one in a worker slot."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone

from embedportal import schedules
from embedportal.schedules import Every
from pipeline.models import RESERVED_PREFIX, Collection
from testing.choices import Category, RunStatus, Trigger
from testing.fingerprints import settings_fingerprint
from testing.models import ACTIVE, BenchmarkRun, ConfigSnapshot, RunInProgress, TestRun
from testing.tester import EmbeddingPipelineOperationsTester

logger = logging.getLogger(__name__)

SCHEDULED_TASK = "testing.tasks.run_scheduled"
CONFIG_TASK = "testing.tasks.run_config_change"
CONFIG_SCHEDULE = "ops-tests-config-change"
# The quick suite hourly and the full suite nightly (in production Argo CronWorkflows run them instead).
# Pruning stays with django-q2 in every deployment (no CronWorkflow runs it): one runner.
SCHEDULES = (
    Every("ops-tests-quick", SCHEDULED_TASK, 60, "quick=True", command=("run_ops_tests", "--quick")),
    Every("ops-tests-full", SCHEDULED_TASK, 24 * 60, "quick=False", command=("run_ops_tests",)),
    Every("testing-retention", "testing.tasks.prune_history", 24 * 60),
)
CONFIG_CATEGORIES = [Category.REGRESSION, Category.INTEGRATION]


def queue_run(requested_by: str = "", **selection: Any) -> tuple[Any, Any]:
    """Queue a run for the test runner (RunInProgress names the run already queued)."""
    tester = EmbeddingPipelineOperationsTester(**selection, requested_by=requested_by)
    return tester.start(RunStatus.QUEUED), tester


def _queue(**selection: Any) -> dict:
    try:
        run, _ = queue_run(**selection)
    except RunInProgress as exc:
        logger.info("operations tests not queued: %s", exc)
        return {"queued": False, "reason": str(exc)}
    return {"queued": True, "run": run.pk}


def run_scheduled(quick: bool = True) -> dict:
    """The scheduled suite: quick (hourly) or full (nightly), queued for the test runner."""
    return _queue(quick=quick, trigger=Trigger.SCHEDULE_DJANGO_Q)


def run_config_change(collections: list[str] | None = None, benchmark: bool = False) -> dict:
    """Regression and integration scenarios for the collections whose configuration changed, then (`benchmark`)
    their workload benchmark, in the test runner (testing.runner)."""
    names = sorted(set(Collection.objects.filter(name__in=collections or []).values_list("name", flat=True)))
    # A configuration-change run still queued takes these collections too (compare-and-swap with its claim).
    queued = TestRun.objects.filter(status=RunStatus.QUEUED, trigger=Trigger.CONFIG_CHANGE)
    for run in queued[:1]:
        merged = sorted(set(run.selection.get("collections") or []) | set(names))
        wish = bool(run.selection.get("benchmark")) or benchmark
        if queued.filter(pk=run.pk).update(selection={**run.selection, "collections": merged, "benchmark": wish}):
            return {"queued": True, "run": run.pk}
    return _queue(categories=CONFIG_CATEGORIES, collections=names, benchmark=benchmark, trigger=Trigger.CONFIG_CHANGE)


def schedule_config_run(collections: list[str], benchmark: bool = False) -> None:
    """One debounced run for the changed collections, the pending run's included, with their workload
    benchmark if this change or the pending one asks for it. Call after commit."""

    def merge(pending: dict) -> dict:
        merged: dict[str, Any] = {"collections": sorted(set(collections) | set(pending.get("collections") or []))}
        if benchmark or pending.get("benchmark"):
            merged["benchmark"] = True
        return merged

    schedules.postpone(CONFIG_SCHEDULE, CONFIG_TASK, merge)


def check_settings_fingerprint(using: str = DEFAULT_DB_ALIAS) -> bool:
    """At start-up: a settings fingerprint other than the last one seen queues a run of every collection."""
    current = settings_fingerprint()
    previous = ConfigSnapshot.objects.using(using).filter(key="settings").values_list("fingerprint", flat=True).first()
    if previous == current:
        return False
    ConfigSnapshot.objects.using(using).update_or_create(key="settings", defaults={"fingerprint": current})
    if previous is None:
        return False  # first start: nothing to compare with
    users = Collection.objects.using(using).exclude(name__startswith=RESERVED_PREFIX)
    names = list(users.values_list("name", flat=True))
    transaction.on_commit(lambda: schedule_config_run(names), using=using)
    return True


def prune_history() -> dict:
    """Every day: finished test runs and benchmark runs past their retention (the counters stay in ScenarioTotals)."""
    now = timezone.now()
    runs = TestRun.objects.exclude(status__in=ACTIVE).filter(
        started_at__lt=now - timedelta(days=settings.EMBEDPORTAL_TEST_RUN_RETENTION_DAYS)
    )
    benchmarks = BenchmarkRun.objects.filter(
        started_at__lt=now - timedelta(days=settings.EMBEDPORTAL_BENCHMARK_RETENTION_DAYS)
    )
    return {"test_rows": runs.delete()[0], "benchmark_runs": benchmarks.delete()[0]}
