"""The checks every generated dashboard passes."""

from __future__ import annotations

import pytest

from grafana import __main__ as cli
from grafana import dashboard, ops_tests_dashboard, performance_dashboard
from tests.grafana.boards import Committed

BOARDS = pytest.mark.parametrize(
    "module", [dashboard, ops_tests_dashboard, performance_dashboard], ids=lambda m: m.__name__
)


@BOARDS
def test_committed_files_equal_a_fresh_generation(module):
    """The committed dashboard and ConfigMap are what the code generates, and `--check` says so."""
    assert module.OUTPUT.read_text(encoding="utf-8") == module.render(), "run: make dashboards"
    assert module.CONFIGMAP.read_text(encoding="utf-8") == module.render_configmap(), "run: make dashboards"
    assert {module.OUTPUT, module.CONFIGMAP} <= set(cli.OUTPUTS)
    assert cli.stale() == []
    assert cli.main(["--check"]) == 0


@BOARDS
def test_check_mode_names_a_stale_file(module, tmp_path, monkeypatch, capsys):
    stale = tmp_path / module.OUTPUT.name
    stale.write_text("{}")
    monkeypatch.setattr(cli, "OUTPUTS", {stale: module.render})
    assert cli.main(["--check"]) == 1
    assert str(stale) in capsys.readouterr().err
    assert cli.main([]) == 0
    assert stale.read_text() == module.render()


@BOARDS
def test_every_panel_and_query_uses_the_datasource_variable_and_says_its_unit(module):
    for p in Committed(module).panels():
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["description"] and p["fieldConfig"]["defaults"]["unit"], p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
