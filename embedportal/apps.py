from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.management import call_command
from django.db import connections
from django.db.migrations.loader import MigrationLoader
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


@checks.register(checks.Tags.database)
def squashes_applied_whole(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[checks.Error]:
    """Django leaves a squashed migration out when only some of those it replaces are applied and they
    are gone from disk, so `migrate` (which runs this check) would stop short silently."""
    errors = []
    for alias in databases or ():
        loader = MigrationLoader(connections[alias])
        for (app, name), squash in loader.replacements.items():
            applied = sum(replaced in loader.applied_migrations for replaced in squash.replaces)
            gone = any(replaced not in loader.disk_migrations for replaced in squash.replaces)
            if gone and 0 < applied < len(squash.replaces):
                errors.append(
                    checks.Error(
                        f"{app} {name} replaces {len(squash.replaces)} migrations, of which only {applied} are "
                        "applied to this database",
                        hint="migrate first with the last release that has them one by one, then with this "
                        "one (docs/runbooks/maintenance.md: squashed migrations)",
                        id="embedportal.E001",
                    )
                )
    return errors
