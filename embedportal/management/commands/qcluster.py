"""django-q2's `qcluster`, with LiteLLM loaded once before the cluster forks its workers.

The embedportal app comes before django_q in INSTALLED_APPS so this command takes the name;
it adds the preload (see pipeline.providers.preload) to django-q2's own command, and a stop that
does not wait for the drain tasks' full length (pipeline.tasks.STOPPING).
"""

from __future__ import annotations

import signal
from functools import partial
from typing import Any

from django_q.management.commands.qcluster import Command as QClusterCommand

from pipeline import providers, signals, tasks


class Command(QClusterCommand):
    help = "Starts the django-q2 cluster (pipeline workers), with LiteLLM loaded once and shared by its workers."

    def handle(self, *args: Any, **options: Any) -> None:
        providers.preload()
        signals.worker_starting.send(sender=self.__class__)
        super().handle(*args, **options)
        # The cluster runs now, under django-q2's own signal handlers (set as it started): ours tell
        # the drain tasks first, then hand over. A pod's stop takes the batches in hand, not minutes.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, partial(_stop, signal.getsignal(signum)))


def _stop(then: Any, signum: int, frame: Any) -> None:
    tasks.STOPPING.value = 1
    then(signum, frame)
