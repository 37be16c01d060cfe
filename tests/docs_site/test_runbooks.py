"""Runbooks: every alert rule links to a complete runbook section, the topics operators need
are there, and every `manage.py` command line in the docs parses with that command's parser."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands, load_command_class

from docs_site.generators import alerts
from docs_site.pages import all_pages

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PROMETHEUS_RULE = ROOT / "deploy" / "base" / "monitoring" / "prometheusrule.yaml"
RULES = alerts.alert_rules(ROOT)


def deploy_alert_rules() -> dict[str, dict]:
    spec = yaml.safe_load(PROMETHEUS_RULE.read_text())["spec"]
    return {r["alert"]: r for g in spec["groups"] for r in g["rules"] if "alert" in r}


def test_the_prometheus_rule_holds_exactly_the_rule_files_alerts_and_links() -> None:
    deployed = deploy_alert_rules()
    assert set(deployed) == {r.name for r in RULES}
    for rule in RULES:
        assert deployed[rule.name]["annotations"].get("runbook_url") == rule.runbook_url


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_every_alert_links_to_a_runbook_with_meaning_impact_diagnosis_mitigation(rule: alerts.AlertRule) -> None:
    assert alerts.runbook_problems(rule, DOCS) == []


def test_a_link_to_a_missing_heading_or_section_is_reported(tmp_path: Path) -> None:
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "x.md").write_text(
        "# X\n\n## Some alert\n\n### Meaning\n\nm\n\n### Impact\n\n### Diagnosis\n\nd\n\n"
        "## Next\n\n### Mitigation\n\nx\n"
    )

    def problems(url: str) -> list[str]:
        rule = alerts.AlertRule("A", "f", "1", "", {}, {"runbook_url": url})
        return alerts.runbook_problems(rule, tmp_path)

    assert problems("https://h/docs/runbooks/x/#some-alert") == [
        "runbooks/x.md#some-alert: section Impact is missing or empty",
        "runbooks/x.md#some-alert: section Mitigation is missing or empty",
    ]
    assert problems("https://h/docs/runbooks/x/#no-such") == ["runbooks/x.md has no heading with anchor #no-such"]
    assert "no documentation page" in problems("https://h/docs/runbooks/y/#a")[0]
    assert "not under the documentation site" in problems("https://h/failures/#a")[0]


def test_the_runbooks_cover_the_tasks_emergencies_and_maintenance_operators_need() -> None:
    headings = {
        line.lstrip("#").strip().lower()
        for page in all_pages(DOCS)
        if page.path.startswith("runbooks/")
        for line in page.body.splitlines()
        if line.startswith("## ")
    }
    needed = {
        "scaling workers",
        "configuration changes",
        "changing a collection's model (re-embed)",
        "troubleshooting a stuck queue",
        "provider outage",
        "database failure and recovery",
        "rollback a release",
        "restore from a backup",
        "upgrading postgresql",
        "upgrading pgvector",
        "upgrading the app",
        "data migrations",
        "rebuilding an index",
    }
    assert needed <= headings, needed - headings


# `manage.py NAME args...` inside code (inline or fenced), up to the end of the line or backtick.
COMMAND_LINE = re.compile(r"manage\.py\s+([a-z_]+)([^`\n]*)")
# Placeholders a synopsis uses for a value: N, NAME, <collection>, $TOKEN.
PLACEHOLDER = re.compile(r"^(?:[A-Z][A-Z0-9_]*|<[^>]+>|\$\{?[A-Z_]+\}?)$")
GENERATED = "docs/reference/"


def command_lines() -> list[tuple[str, str, str]]:
    found = []
    for file in sorted(DOCS.rglob("*.md")) + [ROOT / "README.md"]:
        for match in COMMAND_LINE.finditer(file.read_text(encoding="utf-8")):
            args = re.split(r"\s+(?:&&|\||;|#)\s*", match.group(2))[0].strip()
            found.append((file.relative_to(ROOT).as_posix(), match.group(1), args))
    return found


def concrete_argv(parser, args: str) -> list[str]:
    """A synopsis (`[--once] [--batch N] NAME`) as a command line: brackets dropped, first of
    `a|b` alternatives, and each placeholder replaced by a value its argument accepts."""
    tokens = [t.split("|")[0] for t in shlex.split(args.replace("[", " ").replace("]", " ")) if t != "..."]
    options = {o: a for a in parser._actions for o in a.option_strings}
    positionals = [a for a in parser._actions if not a.option_strings and a.dest != "help"]
    argv: list[str] = []
    for i, token in enumerate(tokens):
        if PLACEHOLDER.match(token):
            action = options.get(tokens[i - 1]) if i else None
            if action is None:
                taken = sum(1 for t in argv if not t.startswith("-"))
                action = positionals[taken] if taken < len(positionals) else None
            if action is not None and action.choices:
                token = str(next(iter(action.choices)))
            elif action is not None and action.type in (int, float):
                token = "1"
            else:
                token = "x"
        argv.append(token)
    return argv


def test_the_docs_contain_command_lines_to_check() -> None:
    names = {name for where, name, _ in command_lines() if not where.startswith(GENERATED)}
    assert {"docs", "reprocess_failed", "run_pipeline", "check_health", "create_collection"} <= names


@pytest.mark.parametrize("where,name,args", command_lines(), ids=lambda v: str(v)[:60])
def test_every_manage_py_command_line_in_the_docs_parses(where: str, name: str, args: str) -> None:
    commands = get_commands()
    assert name in commands, f"{where}: manage.py {name}: no such command"
    if where.startswith(GENERATED) or not args:
        return  # generated synopses come from the parsers; a bare name only names the command
    parser = load_command_class(commands[name], name).create_parser("manage.py", name)
    try:
        parser.parse_args(concrete_argv(parser, args))
    except SystemExit as exc:  # argparse exits on a bad command line
        pytest.fail(f"{where}: `manage.py {name} {args}` does not parse ({exc})")
    except Exception as exc:  # noqa: BLE001  (Django's CommandParser raises CommandError)
        pytest.fail(f"{where}: `manage.py {name} {args}` does not parse: {exc}")


def test_a_wrong_command_line_is_caught() -> None:
    parser = load_command_class(get_commands()["run_pipeline"], "run_pipeline").create_parser(
        "manage.py", "run_pipeline"
    )
    with pytest.raises((SystemExit, Exception)):
        parser.parse_args(["--no-such-flag"])
