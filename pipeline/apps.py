from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db import DEFAULT_DB_ALIAS
from django.db.models.signals import post_migrate


def register_schedules(sender: AppConfig, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """post_migrate: every deployment migrates, so the drain and heartbeat schedules always exist."""
    from pipeline.tasks import ensure_schedules  # lazy: apps load before the models tasks imports

    ensure_schedules(using)


class PipelineConfig(AppConfig):
    name = "pipeline"
    verbose_name = "Embedding pipeline"

    def ready(self) -> None:
        from pipeline import signals  # noqa: F401  (collection index lifecycle)

        post_migrate.connect(register_schedules, sender=self, dispatch_uid="pipeline.register_schedules")
