"""Every Prometheus rule file passes `promtool check rules --lint-fatal` and has a promtool unit test
file, and every one of those passes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.tools import RULES, run_promtool

TESTS = sorted(p.name for p in (RULES / "tests").glob("*_test.yml"))


def test_every_rule_file_is_unit_tested() -> None:
    tested = {
        Path(f).name for name in TESTS for f in yaml.safe_load((RULES / "tests" / name).read_text())["rule_files"]
    }
    assert {p.name for p in RULES.glob("*.rules.yml")} <= tested


@pytest.mark.parametrize("name", sorted(p.name for p in RULES.glob("*.rules.yml")))
def test_rules_pass_promtool_check_with_lint_fatal(name: str) -> None:
    result = run_promtool("check", "rules", "--lint-fatal", name)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", TESTS)
def test_promtool_passes(test_file: str) -> None:
    result = run_promtool("test", "rules", f"tests/{test_file}")
    assert result.returncode == 0, result.stdout + result.stderr
