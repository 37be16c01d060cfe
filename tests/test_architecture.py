"""The app graph runs one way, the modules of an app form no circle, pipeline's performance layer
sits above its core, and production code holds no test tooling (read from the source with `ast`,
function-level imports included)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("embedportal", "pipeline", "reprocessing", "testing", "docs_site", "tokens", "audit")
# What each app must never import: the apps built on it.
FORBIDDEN = {
    "pipeline": {"reprocessing", "testing", "docs_site"},
    "reprocessing": {"testing", "docs_site"},
    "audit": {"pipeline", "reprocessing", "testing", "docs_site"},
}
# Test tooling, and the apps allowed to use it: the operations tester drives the app in-process.
TEST_TOOLING = {"unittest.mock": (), "django.test": ("testing",)}
# Inside an app, the modules of the upper layer, and the entry modules that may import anything.
LAYERS = {
    "pipeline": {
        "upper": "pipeline.performance",
        "entry": ("pipeline.admin", "pipeline.api", "pipeline.views", "pipeline.apps", "pipeline.management"),
    },
}
# Apps whose function-level imports of their own modules are checked against FUNCTION_LEVEL.
FUNCTION_LEVEL_CHECKED = ("embedportal", "pipeline")
FUNCTION_LEVEL = {
    "embedportal.apps:embedportal.schedules": "its post_migrate receiver connects in AppConfig.ready",
    "pipeline.apps:pipeline.signals": "receivers connect in AppConfig.ready, once the models are loaded",
    "pipeline.apps:pipeline.quality": "its receivers (evaluations around a configuration change) connect in ready too",
}


def modules(app: str) -> list[Path]:
    return sorted(p for p in (ROOT / app).rglob("*.py") if "migrations" not in p.parts)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(node: ast.AST, in_function: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node that runs, with whether it runs inside a function; `if TYPE_CHECKING:` never runs."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and ast.unparse(child.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            yield from ((n, in_function) for n in child.orelse)
            continue
        yield child, in_function
        yield from _runtime_nodes(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))


def _imports(path: Path) -> Iterator[tuple[int, str, list[str], bool]]:
    """(line, module, names imported from it or [], function level) for each import statement."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node, in_function in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, [], in_function
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            yield node.lineno, module, [a.name for a in node.names], in_function


def imports(path: Path) -> Iterator[tuple[int, str, bool]]:
    """(line, imported name, function level) for each name an import statement may load:
    `from unittest import mock` names unittest.mock, `from pipeline import storage` pipeline.storage."""
    for line, module, names, in_function in _imports(path):
        yield line, module, in_function
        for name in names:
            yield line, f"{module}.{name}", in_function


def graph(app: str) -> dict[str, dict[str, tuple[int, bool]]]:
    """module -> {module of the same app it imports: (line, function level)}. `from a import b`
    imports module a.b if there is one, else package a: a package re-exporting its submodules
    closes no circle with those importing them by their own path."""
    paths = {module_name(p): p for p in modules(app)}
    edges: dict[str, dict[str, tuple[int, bool]]] = {}
    for name, path in paths.items():
        edges[name] = {}
        for line, module, names, in_function in _imports(path):
            targets = {f"{module}.{n}" if f"{module}.{n}" in paths else module for n in names} or {module}
            for target in targets & paths.keys() - {name}:
                edges[name].setdefault(target, (line, in_function))
    return edges


def circles(app: str) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    edges, index, low, stack, on_stack, found = graph(app), {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                on_stack.discard(w)
                component.append(w)
            on_stack.discard(v)
            if component:
                found.append(sorted([v, *component]))

    for v in edges:
        if v not in index:
            visit(v)
    return sorted(found)


def offending(app: str, forbidden: set[str] | tuple[str, ...], among: tuple[str, ...] | None = None) -> list[str]:
    """Imports of `forbidden` (or below) by the app's modules, or only by those in `among`."""
    found: dict[tuple[str, int], str] = {}
    for path in modules(app):
        if among is not None and module_name(path) not in among:
            continue
        for line, name, _ in imports(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.setdefault((str(path.relative_to(ROOT)), line), name)
    return [f"{where}:{line} imports {name}" for (where, line), name in sorted(found.items())]


def core(app: str) -> tuple[str, ...]:
    """The app's modules below its upper layer: neither in it nor an entry module."""
    rules = LAYERS[app]
    inside = (rules["upper"], *rules["entry"])
    return tuple(
        name
        for name in map(module_name, modules(app))
        if name != app and not any(name == m or name.startswith(m + ".") for m in inside)
    )


def function_level(app: str) -> list[str]:
    """Same-app function-level imports not in FUNCTION_LEVEL, as module:imported."""
    return sorted(
        f"{module}:{imported}"
        for module, targets in graph(app).items()
        for imported, (_, in_function) in targets.items()
        if in_function and f"{module}:{imported}" not in FUNCTION_LEVEL
    )


@pytest.mark.parametrize("app", sorted(FORBIDDEN))
def test_app_imports_nothing_from_the_apps_built_on_it(app):
    assert offending(app, FORBIDDEN[app]) == []


@pytest.mark.parametrize("app", APPS)
def test_production_modules_hold_no_test_tooling(app):
    assert offending(app, tuple(t for t, allowed in TEST_TOOLING.items() if app not in allowed)) == []


@pytest.mark.parametrize("app", APPS)
def test_the_modules_of_an_app_import_each_other_in_no_circle(app):
    assert circles(app) == []


@pytest.mark.parametrize("app", sorted(LAYERS))
def test_the_core_of_an_app_imports_nothing_of_its_upper_layer(app):
    assert offending(app, (LAYERS[app]["upper"],), among=core(app)) == []


@pytest.mark.parametrize("app", FUNCTION_LEVEL_CHECKED)
def test_function_level_imports_of_the_app_itself_are_allowed_and_say_why(app):
    assert function_level(app) == []


def test_the_allow_list_names_only_function_level_imports_that_exist():
    present = {
        f"{m}:{i}" for app in FUNCTION_LEVEL_CHECKED for m, t in graph(app).items() for i, (_, f) in t.items() if f
    }
    assert set(FUNCTION_LEVEL) <= present, set(FUNCTION_LEVEL) - present


@pytest.fixture
def tmp_root(tmp_path, monkeypatch):
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)

    def write(files: dict[str, str]) -> Path:
        for name, text in files.items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(text)
        return tmp_path

    return write


def test_the_checks_see_function_level_imports(tmp_root):
    # The scan must catch an import hidden inside a function, the way pipeline once pulled
    # reprocessing's schedules.
    tmp_root({"pipeline/tasks.py": "def f():\n    from reprocessing import tasks\n    from unittest import mock\n"})
    assert offending("pipeline", FORBIDDEN["pipeline"]) == ["pipeline/tasks.py:2 imports reprocessing"]
    assert offending("pipeline", ("unittest.mock",)) == ["pipeline/tasks.py:3 imports unittest.mock"]


def test_the_circle_check_names_a_circle_closed_by_a_function_level_import(tmp_root):
    # The shape pipeline once had: the models imported the tasks, whose function imported the models.
    tmp_root(
        {
            "pipeline/__init__.py": "",
            "pipeline/models.py": "from pipeline.tasks import kick\n",
            "pipeline/tasks.py": "def kick():\n    from pipeline import models\n",
            "pipeline/storage.py": "from pipeline import models\n",
        }
    )
    assert circles("pipeline") == [["pipeline.models", "pipeline.tasks"]]


def test_the_circle_check_lets_a_package_re_export_and_ignores_type_checking_imports(tmp_root):
    tmp_root(
        {
            "app/__init__.py": "",
            "app/opt/__init__.py": "from app.opt.a import A\nfrom app.opt.b import B\n",
            "app/opt/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app.opt.b import B\nA = 1\n",
            "app/opt/b.py": "from app.opt.a import A\nB = A\n",
        }
    )
    assert circles("app") == []
    # A submodule importing through its own package closes a circle.
    tmp_root({"app/opt/b.py": "from app.opt import A\nB = A\n"})
    assert circles("app") == [["app.opt", "app.opt.b"]]


def test_the_layer_check_fires_on_the_core_importing_the_upper_layer_but_not_on_entry_modules(tmp_root):
    tmp_root(
        {
            "pipeline/__init__.py": "",
            "pipeline/tasks.py": "def evaluate():\n    from pipeline.performance import optimizer\n",
            "pipeline/admin.py": "from pipeline.performance import admin\n",
            "pipeline/performance/__init__.py": "",
            "pipeline/performance/optimizer.py": "from pipeline import tasks\n",
        }
    )
    assert offending("pipeline", ("pipeline.performance",), among=core("pipeline")) == [
        "pipeline/tasks.py:2 imports pipeline.performance"
    ]


def test_the_function_level_check_fires_outside_the_allow_list(tmp_root):
    tmp_root(
        {
            "pipeline/__init__.py": "",
            "pipeline/apps.py": "def ready():\n    from pipeline import signals\n",
            "pipeline/signals.py": "",
            "pipeline/storage.py": "def store():\n    from pipeline import backfill\n",
            "pipeline/backfill.py": "",
        }
    )
    assert function_level("pipeline") == ["pipeline.storage:pipeline.backfill"]


def test_test_tooling_is_allowed_in_the_testing_app_only(tmp_root):
    tmp_root({"testing/inprocess.py": "from django.test import Client\n", "pipeline/views.py": "import django.test\n"})
    tooling = {app: tuple(t for t, allowed in TEST_TOOLING.items() if app not in allowed) for app in APPS}
    assert offending("testing", tooling["testing"]) == []
    assert offending("pipeline", tooling["pipeline"]) == ["pipeline/views.py:1 imports django.test"]
