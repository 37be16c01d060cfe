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
