"""The app graph runs one way, and production code holds no test tooling (read from the source
with `ast`, function-level imports included)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("embedportal", "pipeline", "reprocessing", "testing", "docs_site")
# What each app must never import: the apps built on it.
FORBIDDEN = {
    "pipeline": {"reprocessing", "testing", "docs_site"},
    "reprocessing": {"testing", "docs_site"},
}
TEST_TOOLING = ("unittest.mock", "django.test")


def modules(app: str) -> list[Path]:
    return sorted(p for p in (ROOT / app).rglob("*.py") if "migrations" not in p.parts)


def imported_names(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            # `from unittest import mock` names the tooling in the imported names.
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def offending(app: str, forbidden: set[str] | tuple[str, ...]) -> list[str]:
    found: dict[tuple[str, int], str] = {}
    for path in modules(app):
        for line, name in imported_names(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.setdefault((str(path.relative_to(ROOT)), line), name)
    return [f"{where}:{line} imports {name}" for (where, line), name in sorted(found.items())]


@pytest.mark.parametrize("app", sorted(FORBIDDEN))
def test_app_imports_nothing_from_the_apps_built_on_it(app):
    assert offending(app, FORBIDDEN[app]) == []


@pytest.mark.parametrize("app", APPS)
def test_production_modules_hold_no_test_tooling(app):
    # The operations tester ships as a testing tool: it drives the site with Django's test client.
    allowed = {"django.test"} if app == "testing" else set()
    assert offending(app, set(TEST_TOOLING) - allowed) == []


def test_the_checks_see_function_level_imports(tmp_path, monkeypatch):
    # The scan must catch an import hidden inside a function, the way pipeline once pulled
    # reprocessing's schedules.
    app = tmp_path / "pipeline"
    app.mkdir()
    (app / "tasks.py").write_text("def f():\n    from reprocessing import tasks\n    from unittest import mock\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    assert offending("pipeline", FORBIDDEN["pipeline"]) == ["pipeline/tasks.py:2 imports reprocessing"]
    assert offending("pipeline", TEST_TOOLING) == ["pipeline/tasks.py:3 imports unittest.mock"]
