from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db import DEFAULT_DB_ALIAS
from django.db.models.signals import post_migrate


def register_schedules(sender: AppConfig, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """post_migrate: every deployment migrates, so the hourly documentation check always runs."""
    from docs_site.tasks import ensure_schedules

    ensure_schedules(using)


class DocsSiteConfig(AppConfig):
    name = "docs_site"
    verbose_name = "Documentation"

    def ready(self) -> None:
        post_migrate.connect(register_schedules, sender=self, dispatch_uid="docs_site.register_schedules")
