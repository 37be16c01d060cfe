from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db import DEFAULT_DB_ALIAS
from django.db.models.signals import post_migrate, post_save, pre_save


def on_migrate(sender: Any, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """After migrate or a worker start (a ConfigMap edit skips migrate): a settings change queues a run."""
    from embedportal.schedules import tables_exist
    from testing import tasks
    from testing.models import ConfigSnapshot

    if tables_exist(using, ConfigSnapshot):
        tasks.check_settings_fingerprint(using)


class TestingConfig(AppConfig):
    name = "testing"
    verbose_name = "Operations tests"

    def ready(self) -> None:
        from pipeline import signals
        from pipeline.models import Collection
        from testing import scenarios, triggers  # noqa: F401  (scenarios: importing registers them)

        post_migrate.connect(on_migrate, sender=self, dispatch_uid="testing.on_migrate")
        signals.worker_starting.connect(on_migrate, dispatch_uid="testing.on_worker_start")
        # pipeline knows nothing of testing: the receivers are connected from here.
        pre_save.connect(triggers.remember_config, sender=Collection, dispatch_uid="testing.remember_config")
        post_save.connect(triggers.config_saved, sender=Collection, dispatch_uid="testing.config_saved")
