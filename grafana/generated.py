"""The generated files and the functions that render them (committed; a test compares them)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from grafana import dashboard, ops_tests_dashboard, performance_dashboard
from grafana import slo_rules as slo

OUTPUTS: dict[Path, Callable[[], str]] = {
    slo.OUTPUT: slo.render,
    slo.PERFORMANCE_OUTPUT: slo.render_performance,
    slo.QUALITY_OUTPUT: slo.render_quality,
}
for _board in (dashboard, ops_tests_dashboard, performance_dashboard):
    OUTPUTS |= {_board.OUTPUT: _board.render, _board.CONFIGMAP: _board.render_configmap}


def stale() -> list[Path]:
    return [path for path, render in OUTPUTS.items() if not path.exists() or path.read_text("utf-8") != render()]


def write() -> list[Path]:
    """Rewrite the files whose content changed; returns them."""
    changed = stale()
    for path in changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(OUTPUTS[path](), encoding="utf-8")
    return changed
