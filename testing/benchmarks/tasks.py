"""django-q2 entry points for the benchmark suite: after a collection's configuration changes
(debounced, like the operations tests' regression run: testing.triggers) and nightly."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

TASK = "testing.benchmarks.tasks.run_benchmark"
CONFIG_SCHEDULE = "benchmark-config-change"


def run_benchmark(suite: str = "quick", trigger: str = "config_change", note: str = "") -> dict:
    """Run `manage.py benchmark` in a process of its own: the ingest benchmarks fork workers, which a
    django-q2 worker (a daemonic process) may not. Never fails the task on a regression: the run
    is stored, flagged, exported and visible in the admin."""
    command = [
        sys.executable,
        str(settings.BASE_DIR / "manage.py"),
        "benchmark",
        "--suite",
        suite,
        "--trigger",
        trigger,
        "--note",
        note,
        "--no-fail",
        "--json",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        logger.warning("benchmark not run: %s", reason)
        return {"started": False, "reason": reason}
    run = json.loads(done.stdout)
    return {"started": True, "run": run["id"], "regressions": run["regressions"]}


def schedule_benchmark(change: str) -> None:
    """Debounce: one ONCE schedule, pushed back by every change and noting what changed, so ten
    saves in a minute make one run (EMBEDPORTAL_OPS_TEST_CONFIG_DEBOUNCE_SECONDS). Call after commit."""
    from django_q.models import Schedule

    with transaction.atomic():
        existing = Schedule.objects.select_for_update().filter(name=CONFIG_SCHEDULE).first()
        changes = {change}
        if existing is not None and existing.kwargs:
            try:
                changes |= set(_note(existing.kwargs).removeprefix("configuration changed: ").split(", "))
            except (ValueError, SyntaxError):
                pass
        note = "configuration changed: " + ", ".join(sorted(c for c in changes if c))
        Schedule.objects.update_or_create(
            name=CONFIG_SCHEDULE,
            defaults={
                "func": TASK,
                "kwargs": repr({"suite": "quick", "trigger": "config_change", "note": note[:300]}),
                "schedule_type": Schedule.ONCE,
                "repeats": -1,
                "next_run": timezone.now() + timedelta(seconds=settings.EMBEDPORTAL_OPS_TEST_CONFIG_DEBOUNCE_SECONDS),
            },
        )


def _note(kwargs: str) -> str:
    import ast

    value = ast.literal_eval(kwargs)
    return value.get("note", "") if isinstance(value, dict) else ""
