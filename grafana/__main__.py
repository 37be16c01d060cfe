"""`python -m grafana [--check]`: write (or check) every file generated from the code in grafana/.

The files are committed; tests compare them with what the code generates."""

from __future__ import annotations

import argparse
import sys
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grafana", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report generated files that are out of date")
    args = parser.parse_args(argv)
    changed = stale()
    if args.check:
        for path in changed:
            print(f"{path} is out of date: run `make dashboards`", file=sys.stderr)
        return 1 if changed else 0
    for path in changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(OUTPUTS[path](), encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
