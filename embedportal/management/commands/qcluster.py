"""django-q2's `qcluster`, with LiteLLM loaded once before the cluster forks its workers.

The embedportal app comes before django_q in INSTALLED_APPS so this command takes the name;
it only adds the preload (see pipeline.providers.preload) to django-q2's own command.
"""

from __future__ import annotations

from typing import Any

from django_q.management.commands.qcluster import Command as QClusterCommand

from pipeline import providers, signals


class Command(QClusterCommand):
    help = "Starts the django-q2 cluster (pipeline workers), with LiteLLM loaded once and shared by its workers."

    def handle(self, *args: Any, **options: Any) -> None:
        providers.preload()
        signals.worker_starting.send(sender=self.__class__)
        super().handle(*args, **options)
