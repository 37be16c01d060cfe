"""What the dashboard tests read of a committed dashboard."""

from __future__ import annotations

import json
from types import ModuleType


class Committed:
    """The committed JSON of a dashboard module (grafana/<module>.py, its OUTPUT)."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module

    def committed(self) -> dict:
        return json.loads(self.module.OUTPUT.read_text(encoding="utf-8"))

    def panels(self) -> list[dict]:
        return [p for p in self.committed()["panels"] if p["type"] != "row"]

    def by_title(self) -> dict[str, dict]:
        return {p["title"]: p for p in self.panels()}

    def exprs(self) -> list[str]:
        return [t["expr"] for p in self.panels() for t in p["targets"]]
