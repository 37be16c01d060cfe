"""The configuration-change workload benchmark: the changed collections' own workload, measured by the
test runner after their scenarios (testing.runner), never in a pipeline worker's slot (docs/benchmarks.md)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from subprocess import PIPE

from django.conf import settings

from pipeline.choices import CircuitState
from pipeline.models import Collection, ProviderCircuit
from testing.tasks import run_config_change

logger = logging.getLogger(__name__)

LIMIT_SECONDS = 3600
CHECK_SECONDS = 10  # how often the circuits and the run's cancellation are looked at while it runs


def run_workload(collections: list[str], note: str, still_wanted: Callable[[], bool] = lambda: True) -> dict:
    """`manage.py benchmark --collection ...` in a process of its own (the ingest benchmarks fork workers);
    a regression is stored and flagged, never an error. `still_wanted` False (the run was cancelled) ends it.
    Whatever interrupts the wait (the runner's RunnerStopped) ends its process group first."""
    if not collections:
        return {"started": False, "reason": "no collection to measure"}
    if open_circuit := _open_circuit(collections):
        logger.warning("benchmark not run: %s", open_circuit)
        return {"started": False, "reason": open_circuit}
    command = [sys.executable, str(settings.BASE_DIR / "manage.py"), "benchmark", "--suite", "quick"]
    command += ["--trigger", "config_change", "--note", note, "--no-fail", "--json"]
    command += [f"--collection={name}" for name in collections]
    # Not into a pod's multiprocess metrics: they would count the benchmark's documents as production's.
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["EMBEDPORTAL_PARENT_PID"] = str(os.getpid())  # the benchmark dies with its parent (die_with_parent)
    # Its own process group, ended whole (its forked ingest workers too) when the runner stops: a pod's
    # stop or Ctrl-C does not wait for a benchmark's minutes. A killed run stores nothing (it records at
    # its end; the scratch database is emptied at the next one's start).
    done = subprocess.Popen(command, stdout=PIPE, stderr=PIPE, text=True, env=env, start_new_session=True)
    deadline = time.monotonic() + LIMIT_SECONDS
    next_check = time.monotonic() + CHECK_SECONDS
    ended = None
    try:
        while ended is None:
            try:
                stdout, stderr = done.communicate(timeout=1)
                break
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline:
                ended = f"it ran past {LIMIT_SECONDS} s"
            elif time.monotonic() > next_check:
                next_check = time.monotonic() + CHECK_SECONDS
                # Its own pipeline knows nothing of the real circuits: it kept calling a provider that hung.
                ended = _open_circuit(collections) or (None if still_wanted() else "the test run was cancelled")
    finally:
        if done.returncode is None:  # ended, or the runner stopping: the whole group at once
            with contextlib.suppress(ProcessLookupError):
                os.killpg(done.pid, signal.SIGKILL)
            done.communicate()
    if ended:
        logger.warning("benchmark ended: %s", ended)
        return {"started": False, "reason": ended}
    if done.returncode:
        reason = (stderr.strip().splitlines() or ["no output"])[-1]
        logger.warning("benchmark not run: %s", reason)
        return {"started": False, "reason": reason}
    run = json.loads(stdout)
    return {"started": True, "run": run["id"], "regressions": run["regressions"]}


def _open_circuit(collections: list[str]) -> str | None:
    """Why the collections' workload cannot be measured now: one's provider circuit is open (its provider is
    failing; the workload would only wait out its timeouts)."""
    for collection in Collection.objects.filter(name__in=collections):
        if ProviderCircuit.objects.endpoint(collection).exclude(state=CircuitState.CLOSED).exists():
            return f"the provider circuit of {collection.name} ({collection.model}) is open"
    return None


def run_benchmark(
    suite: str = "quick", trigger: str = "config_change", note: str = "", collections: list[str] | None = None
) -> dict:
    """Kept for a `benchmark-config-change` schedule an older version left pending (this ran the benchmark
    in a worker's slot, for minutes): it only queues the collections' configuration-change run, benchmark
    included, for the test runner."""
    return run_config_change(collections, benchmark=True)
