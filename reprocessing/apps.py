from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db import DEFAULT_DB_ALIAS
from django.db.models.signals import post_migrate


def register_schedules(sender: AppConfig, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """post_migrate: every deployment migrates, so the retry and staleness passes always run."""
    from reprocessing.tasks import ensure_schedules

    ensure_schedules(using)


class ReprocessingConfig(AppConfig):
    name = "reprocessing"

    def ready(self) -> None:
        from reprocessing import receivers  # noqa: F401  (records failures in the pipeline's transactions)

        post_migrate.connect(register_schedules, sender=self, dispatch_uid="reprocessing.register_schedules")
