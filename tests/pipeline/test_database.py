"""DATABASE_URL pointing at a PostgreSQL server without pgvector."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from tests.conftest import ROOT, database_url

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_server_without_pgvector_stops_migrate_with_what_to_do() -> None:
    test_db = connection.settings_dict["NAME"]
    name = f"nopgvector_{os.getpid()}"
    with connection.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"CREATE DATABASE {name}")
    url = database_url().replace(f"/{test_db}", f"/{name}", 1)
    empty = Path(tempfile.mkdtemp(prefix="no-extensions-"))
    try:
        # A server whose extension directory holds no pgvector: PostgreSQL 18 looks for extension
        # control files only under extension_control_path, here an empty folder the server can read.
        (empty / "extension").mkdir()
        empty.chmod(0o755)
        env = {**os.environ, "DATABASE_URL": url, "PGOPTIONS": f"-c extension_control_path={empty}"}
        proc = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )

        assert proc.returncode != 0
        assert "has no pgvector extension ('vector')" in proc.stderr
        assert "unset DATABASE_URL to use the embedded PostgreSQL" in proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT to_regclass('pipeline_document'), (SELECT count(*) FROM pg_extension WHERE extname = 'vector')"
            ).fetchone()
        assert row == (None, 0), "nothing of the pipeline may be created without pgvector"
    finally:
        shutil.rmtree(empty, ignore_errors=True)
        with connection.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
