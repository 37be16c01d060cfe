"""What the dashboard tests read of a committed dashboard, and the checks every generated one passes."""

from __future__ import annotations

import json
from types import ModuleType

from grafana import __main__ as cli
from grafana import generated


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


def assert_fresh(module: ModuleType) -> None:
    """The committed dashboard and ConfigMap are what the code generates, and `--check` says so."""
    assert module.OUTPUT.read_text(encoding="utf-8") == module.render(), "run: make dashboards"
    assert module.CONFIGMAP.read_text(encoding="utf-8") == module.render_configmap(), "run: make dashboards"
    assert {module.OUTPUT, module.CONFIGMAP} <= set(generated.OUTPUTS)
    assert generated.stale() == []
    assert cli.main(["--check"]) == 0


def assert_check_names_a_stale_file(module: ModuleType, tmp_path, monkeypatch, capsys) -> None:
    stale = tmp_path / module.OUTPUT.name
    stale.write_text("{}")
    monkeypatch.setattr(generated, "OUTPUTS", {stale: module.render})
    assert cli.main(["--check"]) == 1
    assert str(stale) in capsys.readouterr().err
    assert cli.main([]) == 0
    assert stale.read_text() == module.render()
