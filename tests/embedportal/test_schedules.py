"""One schedule registry: every app's SCHEDULES, registered by migrate, by one runner per deployment."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import override_settings
from django_q.models import Schedule

from embedportal import schedules


def registered() -> set[str]:
    return set(Schedule.objects.filter(schedule_type=Schedule.MINUTES).values_list("name", flat=True))


@pytest.mark.django_db
def test_every_app_declares_into_the_one_registry():
    names = {every.name for every in schedules.declared()}
    assert {"pipeline-drain", "reprocessing-retry", "docs-freshness", "ops-tests-quick"} <= names
    assert schedules.register()
    assert registered() == names


@pytest.mark.django_db
def test_external_scheduler_leaves_the_passes_to_argo_and_keeps_the_drain_and_heartbeat():
    schedules.register()
    with override_settings(EMBEDPORTAL_SCHEDULER="external"):
        call_command("migrate", verbosity=0)
    passes = {every.name for every in schedules.declared() if every.command}
    assert passes == {"reprocessing-retry", "reprocessing-stale", "ops-tests-quick", "ops-tests-full"}
    assert not registered() & passes
    assert {"pipeline-drain", "pipeline-heartbeat", "docs-freshness"} <= registered()
    call_command("migrate", verbosity=0)
    assert passes <= registered()


@pytest.mark.django_db
def test_a_debounced_run_is_pushed_back_and_merges_the_pending_kwargs(settings):
    settings.EMBEDPORTAL_OPS_TEST_CONFIG_DEBOUNCE_SECONDS = 60
    merge = lambda pending: {"n": pending.get("n", 0) + 1}  # noqa: E731
    schedules.postpone("debounced", "x.y", merge)
    first = Schedule.objects.get(name="debounced").next_run
    schedules.postpone("debounced", "x.y", merge)
    (row,) = Schedule.objects.filter(name="debounced")
    assert (row.func, row.kwargs, row.schedule_type) == ("x.y", "{'n': 2}", Schedule.ONCE)
    assert row.next_run >= first


@pytest.mark.django_db(transaction=True)
def test_a_schedule_whose_last_run_failed_is_exported_as_failing_until_a_run_succeeds(tmp_path):
    from datetime import timedelta

    from django.utils import timezone
    from django_q.models import Task
    from prometheus_client import generate_latest

    from embedportal.metrics import scrape_registry
    from tests.conftest import manage, wait_for
    from tests.tools import parse_metrics

    def failing() -> dict[str, float]:
        samples = parse_metrics(generate_latest(scrape_registry()).decode())
        return {dict(labels)["schedule"]: v for (name, labels), v in samples.items() if name == schedules.FAILING}

    schedules.register()
    Schedule.objects.update(next_run=timezone.now() + timedelta(hours=1))
    assert set(failing().values()) == {0}  # a fresh system: every schedule named, none failing
    for name, func in (("test-fails", "tests.pipeline.qtasks.fail"), ("test-works", "tests.pipeline.qtasks.succeed")):
        Schedule.objects.create(name=name, func=func, schedule_type=Schedule.MINUTES, minutes=60, repeats=-1)
    with (tmp_path / "qcluster.log").open("w") as log:
        cluster = manage("qcluster", env={"Q_WORKERS": "1"}, stdout=log, stderr=log)
        try:
            wait_for(lambda: Task.objects.filter(func__startswith="tests.pipeline.qtasks.").count() == 2, timeout=90)
        finally:
            cluster.terminate()
            cluster.wait(timeout=60)
    assert {k: v for k, v in failing().items() if k.startswith("test-")} == {"test-fails": 1, "test-works": 0}
    assert failing()["pipeline-drain"] == 0
    # Its next run succeeds: the schedule points at that task.
    worked = Task.objects.get(func="tests.pipeline.qtasks.succeed")
    Schedule.objects.filter(name="test-fails").update(task=worked.id)
    assert failing()["test-fails"] == 0


@pytest.mark.django_db
def test_failed_tasks_past_their_retention_are_pruned_daily_and_nothing_else(settings):
    """django-q2 keeps every failed task for good (it trims successes only)."""
    from datetime import timedelta

    from django.utils import timezone
    from django_q.models import Task

    from embedportal import tasks

    settings.EMBEDPORTAL_FAILED_TASK_RETENTION_DAYS = 30
    now = timezone.now()

    def task(name: str, days_ago: int, success: bool) -> None:
        at = now - timedelta(days=days_ago)
        Task.objects.create(id=name, name=name, func="f", started=at, stopped=at, success=success, result="boom")

    task("old-failure", 31, False)
    task("recent-failure", 29, False)
    task("old-success", 31, True)

    assert tasks.prune_failed_tasks(now) == {"failed_tasks": 1}
    assert set(Task.objects.values_list("name", flat=True)) == {"recent-failure", "old-success"}
    assert schedules.register()
    pruning = Schedule.objects.get(name="task-retention")
    assert (pruning.func, pruning.minutes) == ("embedportal.tasks.prune_failed_tasks", 24 * 60)
