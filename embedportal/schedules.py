"""The django-q2 schedules every app declares (`SCHEDULES` in its tasks module), registered in one place."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from importlib import import_module
from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, models, transaction
from django.utils import timezone
from django.utils.module_loading import module_has_submodule

from embedportal import collectors

FAILING = "embedding_pipeline_schedule_failing"


@dataclass(frozen=True)
class Every:
    """A task django-q2 runs every `minutes` (kwargs as django-q2 stores them: "quick=True"); `command`, the
    argv an Argo CronWorkflow runs instead where EMBEDPORTAL_SCHEDULER is `external`."""

    name: str
    func: str
    minutes: int
    kwargs: str = ""
    command: tuple[str, ...] = ()


def declared() -> Iterator[Every]:
    for app in apps.get_app_configs():
        if module_has_submodule(app.module, "tasks"):
            tasks = import_module(f"{app.name}.tasks")
            yield from (s for s in getattr(tasks, "SCHEDULES", ()) if isinstance(s, Every))


def tables_exist(using: str, *others: type[models.Model]) -> bool:
    """Whether django_q's tables (and the others') exist: post_migrate also fires before they
    do (`migrate pipeline` on a new database); the migrate that creates them registers."""
    from django_q.models import Schedule

    tables = connections[using].introspection.table_names()
    return all(model._meta.db_table in tables for model in (Schedule, *others))


def register(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Create or update every declared schedule (delete those an external runner runs); False while
    django_q's tables do not exist."""
    from django_q.models import Schedule

    if not tables_exist(using):
        return False
    external = settings.EMBEDPORTAL_SCHEDULER == "external"
    for every in declared():
        rows = Schedule.objects.using(using)
        if external and every.command:
            rows.filter(name=every.name).delete()
            continue
        defaults = {"func": every.func, "kwargs": every.kwargs, "minutes": every.minutes, "repeats": -1}
        defaults["schedule_type"] = Schedule.MINUTES
        # A new schedule first runs one interval from now: a fresh `make run` must not start every pass at once.
        first_run = timezone.now() + timedelta(minutes=every.minutes)
        rows.update_or_create(name=every.name, defaults=defaults, create_defaults={**defaults, "next_run": first_run})
    return True


def on_migrate(sender: AppConfig, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    # post_migrate fires once per app; django_q's is the one whose tables we need.
    if sender.label == "django_q":
        register(using)


def postpone(name: str, func: str, merge: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Debounce a one-off run: one ONCE schedule per name, pushed back by each call by
    EMBEDPORTAL_OPS_TEST_CONFIG_DEBOUNCE_SECONDS, kwargs `merge`d with the pending ones'. Call after commit."""
    from django_q.models import Schedule

    with transaction.atomic():
        # Locked: two saves at once must not lose one's collections.
        existing = Schedule.objects.select_for_update().filter(name=name).first()
        try:
            pending = ast.literal_eval(existing.kwargs) if existing and existing.kwargs else {}
        except (ValueError, SyntaxError):
            pending = {}
        Schedule.objects.update_or_create(
            name=name,
            defaults={
                "func": func,
                "kwargs": repr(merge(pending if isinstance(pending, dict) else {})),
                "schedule_type": Schedule.ONCE,
                "repeats": -1,
                "next_run": timezone.now() + timedelta(seconds=settings.EMBEDPORTAL_OPS_TEST_CONFIG_DEBOUNCE_SECONDS),
            },
        )


class ScheduleCollector(collectors.DatabaseCollector):
    """Whether each django-q2 schedule's last run failed: nothing else says that a roll-up, an evaluation
    or a retention pass stopped working (EmbeddingPipelineScheduledTaskFailing)."""

    subject = "schedules"
    families = collectors.fresh(
        (FAILING, "1 if the last run of a django-q2 schedule failed (admin: Django Q, Failed tasks).", ["schedule"])
    )

    def fill(self, cur, failing) -> None:
        from django_q.models import Schedule, Task

        # django-q2 trims only successes (save_limit) and embedportal.tasks only failures days old, so a
        # failed last run stays found.
        last = Schedule.objects.values("task")
        failed = set(Task.objects.filter(success=False, id__in=last).values_list("id", flat=True))
        for name, task in Schedule.objects.exclude(name=None).order_by("name").values_list("name", "task"):
            failing.add_metric([name], int(task in failed))
