"""Critical-path coverage: a component x condition cell is covered when a scenario declaring it ran in 7 days."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from testing.choices import Component, Condition
from testing.models import ScenarioTotals
from testing.registry import REGISTRY

WINDOW = timedelta(days=7)


@dataclass
class Coverage:
    cells: dict[tuple[str, str], list[str]]  # (component, condition) -> scenarios that ran
    declared: dict[tuple[str, str], list[str]]  # -> scenarios in the registry

    @property
    def ratio(self) -> float:
        total = len(Component.values) * len(Condition.values)
        return sum(1 for ran in self.cells.values() if ran) / total

    @property
    def uncovered(self) -> list[str]:
        return [f"{c} x {k}" for c in Component.values for k in Condition.values if not self.cells[(c, k)]]

    def rows(self) -> list[tuple[str, list[tuple[str, list[str], list[str]]]]]:
        """For templates: per component, per condition (ran, declared)."""
        return [
            (c, [(k, self.cells[(c, k)], self.declared[(c, k)]) for k in Condition.values]) for c in Component.values
        ]


def coverage() -> Coverage:
    ran = ScenarioTotals.objects.ran_since(timezone.now() - WINDOW)
    declared = {(c, k): [] for c in Component.values for k in Condition.values}
    for scenario in REGISTRY.values():
        for cell in scenario.covers:
            declared[cell].append(scenario.name)
    return Coverage({cell: [s for s in names if s in ran] for cell, names in declared.items()}, declared)
