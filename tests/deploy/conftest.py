"""tests/deploy checks files and rendered manifests: no database is needed."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _postgres_only() -> None:
    """Overrides tests/conftest.py's guard, which creates the test database for every session:
    nothing here touches a database, so `pytest tests/deploy` need not build one."""
