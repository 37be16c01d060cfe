"""Storage faults for real: PostgreSQL restarted under a worker, and a tablespace that fills up.

These run against a scratch embedded PostgreSQL (its own data directory) with the worker in
a child process, so stopping the server or filling a disk never touches the main test
database.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import psycopg
import pytest
from django.db import OperationalError

from pipeline.choices import ErrorType, Stage
from pipeline.embedding import classify_storage_error
from tests.conftest import manage
from tests.reprocessing.conftest import query, run, setup_documents

WORKER_ENV = {
    "FAKE_PROVIDER_KEY": "sk-test-secret-123456",
    "EMBEDPORTAL_CLAIM_BATCH": "50",
    "EMBEDPORTAL_RETRY_BASE_SECONDS": "0.5",
    "EMBEDPORTAL_BATCH_TRIES": "5",
}


def test_storage_errors_are_classified_by_sqlstate():
    def wrapped(cause: Exception) -> OperationalError:
        try:
            raise OperationalError(str(cause)) from cause
        except OperationalError as exc:
            return exc

    cases = {
        psycopg.errors.DiskFull("could not extend file"): ErrorType.DISK_FULL,
        psycopg.errors.SerializationFailure("could not serialize access"): ErrorType.SERIALIZATION,
        psycopg.errors.DeadlockDetected("deadlock detected"): ErrorType.SERIALIZATION,
        psycopg.errors.AdminShutdown("terminating connection"): ErrorType.CONNECTION_LOST,
        psycopg.OperationalError("server closed the connection unexpectedly"): ErrorType.CONNECTION_LOST,
    }
    for cause, expected in cases.items():
        error = classify_storage_error(wrapped(cause))
        assert (error.error_type, error.stage) == (expected, Stage.STORAGE), cause
    assert classify_storage_error(wrapped(psycopg.errors.DiskFull("x"))).transient is False
    assert classify_storage_error(wrapped(psycopg.errors.AdminShutdown("x"))).transient is True


def test_database_restarted_mid_batch_loses_nothing(scratch_server, scratch_db, fake_provider):
    setup_documents(scratch_db, fake_provider.api_base, [f"document number {i}" for i in range(8)])
    fake_provider.delay = 1.0  # the worker is inside the embedding call when the database goes down
    worker = manage("run_pipeline", "--once", env={"DATABASE_URL": scratch_db, **WORKER_ENV}, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not fake_provider.requests:
            assert time.monotonic() < deadline and worker.poll() is None, "the worker never called the provider"
            time.sleep(0.05)
        scratch_server.stop()
        time.sleep(1.5)  # the worker's first storage tries meet a dead server
        scratch_server.start()
        _, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err.decode()[-3000:]
    assert "connection_lost" in err.decode()
    assert len(fake_provider.requests) == 1  # storage was retried, not the embedding
    assert query(scratch_db, "SELECT status, count(*) FROM pipeline_document GROUP BY 1") == [("embedded", 8)]
    assert query(scratch_db, "SELECT count(*), count(DISTINCT (document_id, ordinal)) FROM pipeline_chunk") == [(8, 8)]
    assert query(scratch_db, "SELECT count(*) FROM failed_documents") == [(0,)]


@pytest.fixture
def small_tablespace(scratch_server, scratch_db) -> Iterator[str]:
    """pipeline_chunk moved to a 64 kB tmpfs (mounted as root; owned by the server's OS user)."""
    location = Path(scratch_server.pgdata).parent / "small"
    location.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(location)], check=True)
    shutil.chown(location, "pgserver", "pgserver")
    admin = scratch_server.get_uri()
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE TABLESPACE small LOCATION '{location}'")
        with psycopg.connect(scratch_db, autocommit=True) as conn:
            conn.execute("ALTER TABLE pipeline_chunk SET TABLESPACE small")
        yield scratch_db
    finally:
        try:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {urlparse(scratch_db).path.lstrip('/')} WITH (FORCE)")
                conn.execute("DROP TABLESPACE IF EXISTS small")
        finally:
            subprocess.run(["umount", str(location)], check=True)


def test_full_disk_fails_the_batch_as_disk_full_without_partial_writes(small_tablespace, fake_provider):
    url = small_tablespace
    # 40 documents x ~11 distinct chunks of ~200 characters: about twice what 64 kB holds.
    setup_documents(url, fake_provider.api_base, [" ".join(f"d{i}w{j}" for j in range(300)) for i in range(40)])
    result = run(url, "run_pipeline", "--once", env=WORKER_ENV)
    assert "failed 40" in result.stdout
    assert query(url, "SELECT error_type, stage, state, count(*) FROM failed_documents GROUP BY 1, 2, 3") == [
        (ErrorType.DISK_FULL, Stage.STORAGE, "open", 40)
    ]
    # Disk full is not retried in the batch (it will not clear in seconds): nothing embedded twice.
    sent = Counter(text for r in fake_provider.requests for text in r["inputs"])
    assert len(sent) > 400 and set(sent.values()) == {1}
    assert query(url, "SELECT count(*) FROM pipeline_chunk") == [(0,)]
    assert query(url, "SELECT DISTINCT status FROM pipeline_document") == [("failed",)]
