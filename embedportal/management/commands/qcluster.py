"""django-q2's `qcluster`, with LiteLLM loaded once before the cluster forks its workers.

The embedportal app comes before django_q in INSTALLED_APPS so this command takes the name;
it adds the preload (see pipeline.providers.preload) to django-q2's own command, a stop that
does not wait for the drain tasks' full length (pipeline.tasks.STOPPING), and worker processes that
delete their heartbeat rows when they exit cleanly (pipeline.tasks.remove_heartbeat_at_exit).
"""

from __future__ import annotations

import signal
from functools import partial
from typing import Any

from django_q.management.commands.qcluster import Command as QClusterCommand
from django_q.signals import post_spawn

from pipeline import providers, signals, tasks


class Command(QClusterCommand):
    help = "Starts the django-q2 cluster (pipeline workers), with LiteLLM loaded once and shared by its workers."

    def handle(self, *args: Any, **options: Any) -> None:
        providers.preload()
        signals.worker_starting.send(sender=self.__class__)
        # Connected before the cluster forks, so every worker process it spawns has it.
        post_spawn.connect(tasks.remove_heartbeat_at_exit, dispatch_uid="pipeline.tasks.remove_heartbeat_at_exit")
        super().handle(*args, **options)
        # The cluster runs now, under django-q2's own signal handlers (set as it started): ours tell
        # the drain tasks first, then hand over. A pod's stop takes the batches in hand, not minutes.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, partial(_stop, signal.getsignal(signum)))


def _stop(then: Any, signum: int, frame: Any) -> None:
    tasks.STOPPING.value = 1
    then(signum, frame)
