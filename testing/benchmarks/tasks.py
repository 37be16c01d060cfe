"""django-q2 entry points for the benchmark suite: after a collection's configuration changes
(debounced, like the operations tests' regression run: testing.triggers) and nightly."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from django.conf import settings

from embedportal import schedules

logger = logging.getLogger(__name__)

TASK = "testing.benchmarks.tasks.run_benchmark"
CONFIG_SCHEDULE = "benchmark-config-change"
NOTE = "configuration changed: "


def run_benchmark(suite: str = "quick", trigger: str = "config_change", note: str = "") -> dict:
    """Run `manage.py benchmark` in a process of its own: the ingest benchmarks fork workers, which a
    django-q2 worker (a daemonic process) may not. Never fails the task on a regression: the run
    is stored, flagged, exported and visible in the admin."""
    command = [sys.executable, str(settings.BASE_DIR / "manage.py"), "benchmark", "--suite", suite]
    command += ["--trigger", trigger, "--note", note, "--no-fail", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        logger.warning("benchmark not run: %s", reason)
        return {"started": False, "reason": reason}
    run = json.loads(done.stdout)
    return {"started": True, "run": run["id"], "regressions": run["regressions"]}


def schedule_benchmark(change: str) -> None:
    """One debounced quick-suite run noting every change, the pending run's included. Call after commit."""

    def merge(pending: dict) -> dict:
        changes = {change, *str(pending.get("note", "")).removeprefix(NOTE).split(", ")}
        note = NOTE + ", ".join(sorted(c for c in changes if c))
        return {"suite": "quick", "trigger": "config_change", "note": note[:300]}

    schedules.postpone(CONFIG_SCHEDULE, TASK, merge)
