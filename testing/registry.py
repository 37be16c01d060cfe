"""The scenario registry: functions registered by a decorator (notes: docs/ops-tests.md, "Module notes")."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from testing.choices import Category, Component, Condition

if TYPE_CHECKING:
    from testing.context import Context


class ScenarioFailed(AssertionError):
    """The live system did not behave; the message names the cause."""


class ScenarioSkipped(Exception):
    """The scenario cannot apply to this deployment (the message says why)."""


@dataclass(frozen=True)
class Scenario:
    name: str
    category: str
    component: str
    func: Callable[[Context], dict[str, Any] | None]
    description: str
    covers: tuple[tuple[str, str], ...] = ()
    timeout: float = 120.0
    retries: int = 0
    quick: bool = False
    # Regression and integration scenarios that take a target collection (config-change runs).
    per_collection: bool = False


# Every scenario: the scenario modules register at import, which testing.apps does when ready.
REGISTRY: dict[str, Scenario] = {}


def scenario(
    name: str, category: str, component: str, *, covers: Iterable[str | tuple[str, str]] = (), **options: Any
) -> Callable[[Callable], Callable]:
    """Register `func` as a scenario; `options` are Scenario's (timeout, retries, quick, per_collection)."""
    assert category in Category.values, category
    assert component in Component.values, component
    # A bare component is under the condition the category names, where the scenario's own component is too.
    own = [component] if category in Condition.values else []
    cells = tuple(dict.fromkeys(c if isinstance(c, tuple) else (c, category) for c in [*own, *covers]))
    for comp, cond in cells:
        assert comp in Component.values and cond in Condition.values, (comp, cond)

    def register(func: Callable) -> Callable:
        assert name not in REGISTRY, f"scenario {name} registered twice"
        description = (func.__doc__ or "").strip().split("\n")[0]
        REGISTRY[name] = Scenario(name, category, component, func, description, cells, **options)
        return func

    return register


class UnknownSelection(ValueError):
    pass


def select(categories: Iterable[str] = (), names: Iterable[str] = (), quick: bool = False) -> list[Scenario]:
    """Scenarios by category and/or name, in registry order; nothing asked for means all."""
    categories, names = list(categories), list(names)
    unknown = [c for c in categories if c not in Category.values] + [n for n in names if n not in REGISTRY]
    if unknown:
        raise UnknownSelection(
            f"unknown categories or scenarios: {', '.join(unknown)} "
            f"(categories: {', '.join(Category.values)}; list scenarios with run_ops_tests --list)"
        )
    chosen = [
        s for s in REGISTRY.values() if (not categories and not names) or s.category in categories or s.name in names
    ]
    if quick:
        chosen = [s for s in chosen if s.quick]
    if not chosen:  # a run of nothing would be recorded as passed
        quick_ones = sorted({s.category for s in REGISTRY.values() if s.quick})
        raise UnknownSelection(
            f"no scenario of {', '.join(categories + names)} is in the quick suite "
            f"(its categories: {', '.join(quick_ones)}); leave out quick to run them"
        )
    return sorted(chosen, key=lambda s: Category.values.index(s.category))
