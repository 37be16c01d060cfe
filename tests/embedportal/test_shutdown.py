"""Processes a worker starts die with it, however it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from tests.conftest import ROOT, wait_for

# The child holds its own session, as the benchmark a worker's task starts does: a signal to the
# worker's group never reaches it.
PARENT = textwrap.dedent(
    """
    import os, subprocess, sys, time
    env = {**os.environ, "EMBEDPORTAL_PARENT_PID": str(os.getpid())}
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], start_new_session=True, env=env)
    print(child.pid, flush=True)
    time.sleep(60)
    """
)
CHILD = textwrap.dedent(
    """
    import os, time
    from embedportal.shutdown import die_with_parent
    die_with_parent(int(os.environ["EMBEDPORTAL_PARENT_PID"]))
    print("ready", flush=True)
    time.sleep(60)
    """
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead: its parent (init here) reaps it in its own time.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[1][0] != "Z"


def test_a_process_started_by_a_worker_dies_when_the_worker_is_killed():
    # A benchmark started by a django-q2 worker's task outlived the worker killed at its task timeout
    # (SIGKILL) and held the scratch database's lock for 21 minutes (an adversarial-input soak).
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=os.environ
    )
    child = int(parent.stdout.readline())
    try:
        assert parent.stdout.readline() == "ready\n" and alive(child)
        parent.kill()
        parent.wait()
        wait_for(lambda: not alive(child), timeout=10)
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
