from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class EmbedportalConfig(AppConfig):
    name = "embedportal"

    def ready(self) -> None:
        from embedportal import schedules

        post_migrate.connect(schedules.on_migrate, dispatch_uid="embedportal.schedules")
