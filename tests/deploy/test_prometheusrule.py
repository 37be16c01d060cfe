"""deploy/base/monitoring/prometheusrule.yaml is generated from grafana/prometheus/*.rules.yml."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.deploy import validators
from tests.deploy.render import DEPLOY


def generator() -> ModuleType:
    # deploy/ is not a package; load the script the way `python deploy/generate_prometheusrule.py` runs it.
    spec = importlib.util.spec_from_file_location("generate_prometheusrule", DEPLOY / "generate_prometheusrule.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_committed_prometheusrule_equals_a_fresh_generation() -> None:
    gen = generator()
    committed = gen.OUTPUT.read_text(encoding="utf-8")
    assert committed == gen.render(gen.load_groups()), "run: python deploy/generate_prometheusrule.py"
    assert gen.main(["--check"]) == 0


def _write_rules(directory: Path, name: str, groups: list[dict]) -> None:
    (directory / name).write_text(yaml.safe_dump({"groups": groups}))


def test_generator_with_no_rule_files_gives_a_valid_empty_rule(tmp_path: Path) -> None:
    gen = generator()
    doc = yaml.safe_load(gen.render(gen.load_groups(tmp_path)))
    assert doc["spec"]["groups"] == []
    validators.validate(doc)


def test_generator_wraps_every_group_of_every_file_in_name_order(tmp_path: Path) -> None:
    gen = generator()
    _write_rules(tmp_path, "b.rules.yml", [{"name": "b1", "rules": [{"record": "job:up:sum", "expr": "sum(up)"}]}])
    multi_line = "sum(rate(embedding_pipeline_errors_total[5m]))\n  > 1\n"
    _write_rules(
        tmp_path,
        "a.rules.yml",
        [
            {
                "name": "a1",
                "rules": [{"alert": "Errors", "expr": multi_line, "for": "5m", "labels": {"severity": "page"}}],
            },
            {"name": "a2", "rules": []},
        ],
    )
    (tmp_path / "notes.yml").write_text("not: rules\n")  # only *.rules.yml files count
    text = gen.render(gen.load_groups(tmp_path))
    doc = yaml.safe_load(text)
    assert [g["name"] for g in doc["spec"]["groups"]] == ["a1", "a2", "b1"]
    assert doc["spec"]["groups"][0]["rules"][0]["expr"] == multi_line  # unchanged through YAML
    validators.validate(doc)


def test_generator_rejects_duplicate_group_names_and_non_rule_files(tmp_path: Path) -> None:
    gen = generator()
    _write_rules(tmp_path, "a.rules.yml", [{"name": "same", "rules": []}])
    _write_rules(tmp_path, "b.rules.yml", [{"name": "same", "rules": []}])
    with pytest.raises(gen.RuleFileError, match="also defined"):
        gen.load_groups(tmp_path)
    (tmp_path / "b.rules.yml").write_text("rules: []\n")
    with pytest.raises(gen.RuleFileError, match="groups"):
        gen.load_groups(tmp_path)


def test_check_mode_reports_a_stale_manifest(tmp_path: Path) -> None:
    gen = generator()
    output = tmp_path / "prometheusrule.yaml"
    output.write_text(gen.render([]))
    _write_rules(tmp_path, "x.rules.yml", [{"name": "x", "rules": []}])
    assert gen.main(["--check", "--rules-dir", str(tmp_path), "--output", str(output)]) == 1
    assert gen.main(["--rules-dir", str(tmp_path), "--output", str(output)]) == 0
    assert gen.main(["--check", "--rules-dir", str(tmp_path), "--output", str(output)]) == 0
