from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.management import call_command
from django.db.models.signals import post_migrate


class EmbedportalConfig(AppConfig):
    name = "embedportal"

    def ready(self) -> None:
        from embedportal import schedules

        post_migrate.connect(schedules.on_migrate, dispatch_uid="embedportal.schedules")
        post_migrate.connect(create_cache_table, dispatch_uid="embedportal.cache")


def create_cache_table(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    """The database cache's table (settings.CACHES: the API throttles' counts): created by every
    migrate, so a deployment that only migrates (Kubernetes) has it too. A no-op once it exists."""
    if sender.label == "auth":  # post_migrate comes per app with models; embedportal has none
        call_command("createcachetable", database=using, verbosity=0)
