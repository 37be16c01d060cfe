"""Tests run against real PostgreSQL + pgvector: the embedded server unless DATABASE_URL is set."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection

from testing.fakeprovider import FakeProvider

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix) -> None:
    # One test database per pytest process: several runs can share the embedded server.
    from django.conf import settings

    settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = f"test_embedportal_{os.getpid()}"


@pytest.fixture(scope="session", autouse=True)
def _postgres_only(django_db_setup, django_db_blocker) -> None:
    with django_db_blocker.unblock():
        assert connection.vendor == "postgresql", "tests run on PostgreSQL + pgvector only"


class OneRoundPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """Production's hasher (pbkdf2_sha256) at one iteration instead of 870,000 (about 0.4 s per
    password on a CI core, paid by every test user, admin_user included). The hashes keep their
    format, iteration count included, so a server a test starts with the production settings
    checks them as it would its own."""

    iterations = 1


@pytest.fixture(scope="session", autouse=True)
def _one_round_password_hashing() -> Iterator[None]:
    from django.conf import settings
    from django.test import override_settings

    hashers = [f"{__name__}.{OneRoundPBKDF2PasswordHasher.__name__}", *settings.PASSWORD_HASHERS]
    with override_settings(PASSWORD_HASHERS=hashers):
        yield


@pytest.fixture(autouse=True)
def _shared_worker_only_where_asked(request: pytest.FixtureRequest) -> None:
    """The operations tests' shared worker (tests/testing/conftest.py, a `run_pipeline` polling every
    0.2 s) runs only for the tests that ask for it (`live_worker` starts it again): left running, it
    claimed other tests' documents before their own claims did (CI: a claim got 0 of 3)."""
    if "live_worker" not in request.fixturenames:
        from tests.testing.conftest import LiveWorker

        if LiveWorker.session is not None:
            LiveWorker.session.stop()


@pytest.fixture(scope="session", autouse=True)
def _flush_outlasts_a_deadlock() -> Iterator[None]:
    """The flush after a transactional test TRUNCATEs every table while live worker processes keep
    working on the same database; a worker's transaction taking its tables in another order can
    deadlock with it, and PostgreSQL then aborts the TRUNCATE. The whole flush was rolled back, so
    running it again is safe (the worker's transaction has gone on)."""
    from django.db.backends.postgresql.operations import DatabaseOperations
    from psycopg.errors import DeadlockDetected

    flush = DatabaseOperations.execute_sql_flush

    def retrying(self, sql_list):
        for attempt in range(5):
            try:
                return flush(self, sql_list)
            except Exception as exc:
                if attempt == 4 or not isinstance(exc.__cause__, DeadlockDetected):
                    raise
                time.sleep(0.2)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(DatabaseOperations, "execute_sql_flush", retrying)
        yield


# The key variables tests name, bound to the fake providers' host and the reranker tests' example host
# (EMBEDPORTAL_PROVIDER_KEY_HOSTS refuses every key to an api_base by default), in this process and in the
# workers tests start.
TEST_KEY_HOSTS = ",".join(
    [
        *(f"{name}=127.0.0.1" for name in ("FAKE_PROVIDER_KEY", "NEW_PROVIDER_KEY", "PRICED_KEY", "TEAM_M_OPENAI_KEY")),
        *("RERANK_KEY=127.0.0.1", "RERANK_KEY=rerank.example"),
    ]
)


@pytest.fixture(scope="session", autouse=True)
def _test_keys_bound_to_the_fake_providers() -> Iterator[None]:
    from django.test import override_settings

    from embedportal.env import env_key_hosts

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMBEDPORTAL_PROVIDER_KEY_HOSTS", TEST_KEY_HOSTS)
        with override_settings(EMBEDPORTAL_PROVIDER_KEY_HOSTS=env_key_hosts("EMBEDPORTAL_PROVIDER_KEY_HOSTS")):
            yield


def database_url() -> str:
    """A URL for the test database, for subprocesses (workers) started by tests."""
    s = connection.settings_dict
    host = s["HOST"] or s.get("OPTIONS", {}).get("host", "")
    auth = quote(s["USER"] or "") + (":" + quote(s["PASSWORD"]) if s["PASSWORD"] else "")
    if host.startswith("/"):
        return f"postgresql://{auth}@/{s['NAME']}?host={quote(host)}"
    return f"postgresql://{auth}@{host}:{s['PORT'] or 5432}/{s['NAME']}"


def manage(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    """Start `manage.py ARGS` against the test database in a real child process."""
    full_env = {**os.environ, "DATABASE_URL": database_url(), **(env or {})}
    return subprocess.Popen([sys.executable, str(ROOT / "manage.py"), *args], env=full_env, cwd=ROOT, **kwargs)


def wait_for(predicate, timeout: float = 30.0) -> None:
    """Poll until `predicate()` holds (for real processes); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def serving_fake_provider() -> Iterator[FakeProvider]:
    """A local fake embedding provider (8 dims) for the length of a test."""
    provider = FakeProvider(dims=8).start()
    yield provider
    provider.stop()


fake_provider = pytest.fixture(serving_fake_provider, name="fake_provider")
# Another endpoint, for a second model configuration.
second_provider = pytest.fixture(serving_fake_provider, name="second_provider")


@pytest.fixture
def hash_collection(db):
    from pipeline.collections import create_collection

    return create_collection(
        name="hashes",
        model="local/hash-16",
        chunking_strategy="recursive",
        chunk_unit="characters",
        chunk_size=200,
        chunk_overlap=20,
        batch_size=16,
        # Hash vectors match equal texts only: tests search with a chunk's exact text.
        contextual_chunks=False,
    )


@pytest.fixture
def fake_collection(db, fake_provider, monkeypatch):
    from tests.factories import fake_backed

    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-test-secret-123456")
    return fake_backed("fake", fake_provider.api_base)


@pytest.fixture
def api(admin_user):
    """The API client of a superuser."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def admin_login(browser, base_url: str, next_path: str = "/admin/", username: str = "ops") -> None:
    """Sign in through the admin's login form in a real browser, and wait until the signed-in page
    has loaded: a click on submit returns before the POST completes, and a page opened at once
    could race the login (and land on the login form)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{base_url}/admin/login/?next={next_path}")
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys("correct horse battery")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.ID, "logout-form"))
