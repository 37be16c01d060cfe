"""django-q2's `qcluster`, with LiteLLM loaded once before the cluster forks its workers.

The embedportal app comes before django_q in INSTALLED_APPS so this command takes the name;
it adds the preload (see pipeline.providers.preload) to django-q2's own command, a stop that
does not wait for the drain tasks' full length (pipeline.tasks.STOPPING), worker processes that beat
as they start and delete their heartbeat rows when they exit cleanly (pipeline.tasks.worker_spawned), and a
cluster that ends whole when one of its processes dies (`_end_instead_of_reincarnating`).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from functools import partial
from typing import Any

from django.conf import settings
from django_q.cluster import Cluster, Sentinel
from django_q.management.commands.qcluster import Command as QClusterCommand
from django_q.signals import post_spawn

from pipeline import providers, signals, tasks


class Command(QClusterCommand):
    help = "Starts the django-q2 cluster (pipeline workers), with LiteLLM loaded once and shared by its workers."

    def handle(self, *args: Any, **options: Any) -> None:
        providers.preload()
        signals.worker_starting.send(sender=self.__class__)
        # Connected before the cluster forks, so every worker process it spawns has it.
        post_spawn.connect(tasks.worker_spawned, dispatch_uid="pipeline.tasks.worker_spawned")
        # Set before the cluster forks its sentinel, which inherits it.
        Sentinel.reincarnate = _end_instead_of_reincarnating(Sentinel.reincarnate)
        # django-q2's own handle, holding on to the cluster: its sentinel's exit code is this command's.
        settings.SECRET_KEY  # noqa: B018 - the cluster signs its tasks: fail now, not in a worker
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        cluster = Cluster()
        # django-q2's Cluster sets its signal handlers when it is made: ours tell the drain tasks (and a
        # running benchmark) first, then hand over. A pod's stop takes the batches in hand, not minutes.
        # Set before start(), which polls for the sentinel every 0.1 s: set after it, a stop in the
        # cluster's first moments reached django-q2 alone, and a benchmark just started ran to its end.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, partial(_stop, signal.getsignal(signum)))
        try:
            cluster.start()
        except RuntimeError:  # the sentinel ended before the cluster was ready; the log says why
            raise SystemExit(cluster.sentinel.exitcode or 1) from None
        if options.get("run_once"):
            cluster.stop()
            return
        # A cluster that ended abnormally exits with its sentinel's code (70), which a supervisor
        # restarting on failure (systemd's Restart=on-failure, a pod's restartPolicy) acts on. Polled,
        # not joined: the signal handlers above join the sentinel themselves.
        while cluster.sentinel.is_alive():
            time.sleep(0.5)
        if cluster.sentinel.exitcode:
            raise SystemExit(cluster.sentinel.exitcode)


def _stop(then: Any, signum: int, frame: Any) -> None:
    tasks.STOPPING.value = 1
    then(signum, frame)


RECYCLED = -2  # django-q2's worker timer once it has done its Q_CLUSTER recycle count of tasks


def _end_instead_of_reincarnating(reincarnate: Any) -> Any:
    """The sentinel's reincarnate, except for a process that died or was killed for a timeout: then every
    process of the cluster is killed and the cluster ends, for its supervisor to start it afresh. A
    process killed while it waits on the cluster's task or result queue holds that queue's lock for
    good (django-q2 issue #23): its replacement and every other worker then wait forever, and the
    cluster embeds nothing while it looks alive (an OOM kill of one idle worker stopped a whole pod)."""

    def reincarnated(sentinel: Any, process: Any) -> None:
        if process in sentinel.pool and process.timer.value == RECYCLED and not process.is_alive():
            return reincarnate(sentinel, process)
        logging.getLogger(__name__).critical(
            "cluster process %s (pid %s) died or timed out: its queues may be left locked, so the whole "
            "cluster stops for its supervisor to start it again",
            process.name,
            process.pid,
        )
        for member in (*sentinel.pool, sentinel.monitor, sentinel.pusher):
            if member.is_alive():
                member.kill()
        os._exit(70)

    return reincarnated
