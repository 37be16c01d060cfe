"""`make run`'s script: it starts web + worker, ingests the sample corpus, and Ctrl-C stops it all."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from pipeline.models import Document
from pipeline.tasks import DRAIN_SECONDS
from testing.models import RunnerHeartbeat
from tests.conftest import ROOT, database_url, wait_for
from tests.tools import free_port

pytestmark = pytest.mark.django_db(transaction=True)

# Ctrl-C in a terminal: SIGINT to the whole foreground process group, which a test reproduces
# by starting the script as the leader of its own group with SIGINT not ignored.
LAUNCH = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.setsid(); os.execvp('bash', sys.argv[1:])"
)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def descendants(root: int) -> dict[int, str]:
    """Every process below `root`, with its command line."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines()]
    children: dict[int, list[int]] = {}
    for pid, ppid, *_ in rows:
        children.setdefault(int(ppid), []).append(int(pid))
    below, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            below.add(child)
            todo.append(child)
    return {int(row[0]): (row[2] if len(row) > 2 else "") for row in rows if int(row[0]) in below}


def children(parent: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True).stdout
    return {int(pid) for pid in out.split()}


def qcluster_pids(root: int) -> set[int]:
    """The script's qcluster processes: descendants of `root` (the script starts it in a session
    of its own, so not in its group). Only these: other test runs start clusters of their own."""
    return {pid for pid, args in descendants(root).items() if "manage.py qcluster" in args}


def running(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        alive.add(pid)
    return alive


def run_env(tmp_path: Path, port: int) -> dict[str, str]:
    """`make run`'s environment on the test database, its files under tmp_path."""
    env = {**os.environ, "DATABASE_URL": database_url(), "PORT": str(port)}
    env["EMBEDPORTAL_DATA_DIR"] = str(tmp_path / "data")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # run.sh's own: under the data directory
    return env


def test_ctrl_c_stops_web_worker_and_test_runner(tmp_path: Path) -> None:
    port = free_port()
    env = run_env(tmp_path, port)
    script = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "bash", str(ROOT / "scripts" / "run.sh")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    started: set[int] = set()
    try:
        # The sample corpus is ingested by the worker and the web app answers.
        wait_for(lambda: Document.objects.filter(status="embedded").count() >= 1, timeout=180)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.status == 200
        # The processes' metrics files are the data directory's, not the checkout's (shared by every stack).
        assert list((tmp_path / "data" / "prometheus").glob("*.db"))
        # The documentation site the admin links to is built where the web serves it from.
        wait_for(lambda: (tmp_path / "data" / "site" / "index.html").is_file(), timeout=120)
        started = qcluster_pids(script.pid)
        assert started, "no qcluster process was started"
        # The test runner beside them: queued operations test runs have a process to execute in.
        wait_for(lambda: RunnerHeartbeat.objects.alive().exists(), timeout=60)
        runners = {pid for pid, args in descendants(script.pid).items() if "manage.py run_test_runner" in args}
        assert runners, "no test runner process was started"
        started |= runners

        # A cluster process killed (out of memory, kill -9) ends the cluster with code 70; the
        # script starts a new one, as Kubernetes restarts a worker container, which embeds.
        first = {pid for pid in started if "manage.py qcluster" in descendants(script.pid).get(pid, "")}
        main = max(first, key=lambda pid: len(set(descendants(pid)) & first))  # the others are below it
        (sentinel,) = children(main)
        os.kill(min(children(sentinel)), signal.SIGKILL)  # a worker, the monitor or the pusher
        wait_for(lambda: qcluster_pids(script.pid) - first, timeout=60)
        started |= qcluster_pids(script.pid)
        # Enqueued as a user would, with the script's settings: its wake-up task is signed with its key.
        document = tmp_path / "after-restart.md"
        document.write_text("# After the restart\n\nThe worker came back.\n")
        enqueued = [sys.executable, "manage.py", "enqueue", str(document), "--collection", "sample"]
        subprocess.run(enqueued, cwd=ROOT, env=env, check=True, timeout=120)
        restarted = Document.objects.filter(external_id__endswith="after-restart.md", status="embedded")
        wait_for(restarted.exists, timeout=120)
        started |= qcluster_pids(script.pid)
        # Its main process killed outright: the sentinel and workers it leaves, orphaned, go too, and a
        # new cluster starts (each cluster leads a process group of its own).
        (main,) = {pid for pid in qcluster_pids(script.pid) if os.getpgid(pid) == pid}
        os.kill(main, signal.SIGKILL)
        wait_for(lambda: not group_alive(main), timeout=30)
        wait_for(lambda: qcluster_pids(script.pid) - started, timeout=60)
        started |= qcluster_pids(script.pid)

        os.killpg(script.pid, signal.SIGINT)

        # django-q2 lets a worker finish the task it runs before the cluster stops, and a drain
        # task of the sample corpus may run DRAIN_SECONDS: the bound is that plus a minute (a
        # deadlocked stop, the bug this test guards against, never ends).
        stopped_within = DRAIN_SECONDS + 60
        wait_for(lambda: script.poll() is not None and not group_alive(script.pid), timeout=stopped_within)
        try:
            wait_for(lambda: not started & running(started), timeout=stopped_within)
        except AssertionError:
            table = subprocess.run(
                ["ps", "-o", "pid,ppid,pgid,etime,args", "-p", ",".join(map(str, running(started)))],
                capture_output=True,
                text=True,
            ).stdout
            raise AssertionError(f"still running:\n{table}") from None
    finally:
        # Everything the script started, a task's own subprocesses included (a benchmark a worker
        # runs would otherwise outlive a failed run and claim later tests' documents).
        for pid in started | set(descendants(script.pid)):
            with contextlib.suppress(ProcessLookupError):
                if pid in started and os.getpgid(pid) == pid:  # a cluster's main: its group, orphans too
                    os.killpg(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGKILL)
        if group_alive(script.pid):
            os.killpg(script.pid, signal.SIGKILL)
        output = script.communicate(timeout=30)[0]
    assert "embedportal is running" in output, output
    assert "the worker (qcluster) exited with code 70; starting it again in 1 s" in output, output
    assert re.search(r"the worker \(qcluster\) exited with code 137; starting it again in \d+ s", output), output


def test_a_busy_port_fails_with_a_clear_message_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            ["bash", str(ROOT / "scripts" / "run.sh")],
            cwd=ROOT,
            env=run_env(tmp_path, port),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"embedportal: port {port} on 127.0.0.1 is in use" in result.stderr
    assert "embedportal is running" not in result.stdout
    assert not (tmp_path / "data" / "prometheus").exists()  # stopped before starting anything (web, worker, metrics)
