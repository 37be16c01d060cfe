"""django-q2 entry points for the benchmarks: after a collection's configuration changes, its own
workload (debounced, like the operations tests' regression run: testing.triggers)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from subprocess import PIPE

from django.conf import settings

from embedportal import schedules
from pipeline import tasks as pipeline_tasks
from pipeline.choices import CircuitState
from pipeline.models import Collection, ProviderCircuit

logger = logging.getLogger(__name__)

TASK = "testing.benchmarks.tasks.run_benchmark"
CONFIG_SCHEDULE = "benchmark-config-change"


def run_benchmark(
    suite: str = "quick", trigger: str = "config_change", note: str = "", collections: list[str] | None = None
) -> dict:
    """`manage.py benchmark` in a process of its own (the ingest benchmarks fork workers, which a daemonic
    django-q2 worker may not); a regression is stored and flagged, never a failed task."""
    if open_circuit := _open_circuit(collections or []):
        logger.warning("benchmark not run: %s", open_circuit)
        return {"started": False, "reason": open_circuit}
    command = [sys.executable, str(settings.BASE_DIR / "manage.py"), "benchmark", "--suite", suite]
    command += ["--trigger", trigger, "--note", note, "--no-fail", "--json"]
    command += [f"--collection={name}" for name in collections or []]
    # Not into the worker pod's multiprocess metrics: they would count the benchmark's documents as production's.
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["EMBEDPORTAL_PARENT_PID"] = str(os.getpid())  # the benchmark dies with this worker (die_with_parent)
    # Its own process group, ended whole (its forked ingest workers too) when the worker stops: a pod's
    # stop or Ctrl-C waits for the batch in hand, not for a benchmark's minutes. A killed run stores
    # nothing (it records at its end; the scratch database is emptied at the next one's start).
    done = subprocess.Popen(command, stdout=PIPE, stderr=PIPE, text=True, env=env, start_new_session=True)
    deadline = time.monotonic() + 3600
    while True:
        try:
            stdout, stderr = done.communicate(timeout=1)
            break
        except subprocess.TimeoutExpired:
            stopping = bool(pipeline_tasks.STOPPING.value)
            # Its own pipeline knows nothing of the real circuits: it kept calling a provider that hung.
            circuit = _open_circuit(collections or []) if int(time.monotonic()) % 10 == 0 else None
            if stopping or circuit or time.monotonic() > deadline:
                os.killpg(done.pid, signal.SIGKILL)
                done.communicate()
                reason = "the worker stopped" if stopping else circuit or "it ran past 3600 s"
                logger.warning("benchmark ended: %s", reason)
                if stopping and trigger == "config_change":
                    for name in collections or []:  # measured by the next cluster instead
                        schedule_benchmark(name)
                return {"started": False, "reason": reason}
    if done.returncode:
        reason = (stderr.strip().splitlines() or ["no output"])[-1]
        logger.warning("benchmark not run: %s", reason)
        return {"started": False, "reason": reason}
    run = json.loads(stdout)
    return {"started": True, "run": run["id"], "regressions": run["regressions"]}


def _open_circuit(collections: list[str]) -> str | None:
    """Why the collections' workload cannot be measured now: one's provider circuit is open (its provider is
    failing; the workload would only wait out its timeouts, holding a worker slot)."""
    for collection in Collection.objects.filter(name__in=collections):
        if ProviderCircuit.objects.endpoint(collection).exclude(state=CircuitState.CLOSED).exists():
            return f"the provider circuit of {collection.name} ({collection.model}) is open"
    return None


def schedule_benchmark(change: str) -> None:
    """One debounced run of the changed collections' own workloads, the pending run's included. Call after commit."""

    def merge(pending: dict) -> dict:
        collections = sorted({change, *pending.get("collections", [])})
        note = ("configuration changed: " + ", ".join(collections))[:300]
        return {"trigger": "config_change", "note": note, "collections": collections}

    schedules.postpone(CONFIG_SCHEDULE, TASK, merge)
