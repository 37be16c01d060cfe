"""Management commands reference: the project's own commands, from their argument parsers."""

from __future__ import annotations

import argparse

from django.core.management import get_commands, load_command_class

from docs_site.generators.base import PROJECT_APPS, GeneratedPage, table

PATH = "reference/commands.md"
# Options every Django command has; listed once instead of on every command.
DJANGO_COMMON = {
    f"--{name}"
    for name in "version verbosity settings pythonpath traceback no-color force-color skip-checks help".split()
}


def project_commands() -> dict[str, str]:
    """{command: app} for the commands our apps define (not Django's or third parties')."""
    return {name: app for name, app in sorted(get_commands().items()) if app in PROJECT_APPS}


def parser(name: str, app: str | None = None) -> argparse.ArgumentParser:
    app = app or get_commands()[name]
    return load_command_class(app, name).create_parser("manage.py", name)


def _own_actions(p: argparse.ArgumentParser) -> list[argparse.Action]:
    """The parser's actions but Django's common options."""
    return [action for action in p._actions if not set(action.option_strings) & DJANGO_COMMON]


def _usage(p: argparse.ArgumentParser, prog: str) -> str:
    parts = [prog]
    for action in _own_actions(p):
        if isinstance(action, argparse._SubParsersAction):
            parts.append("{" + ",".join(action.choices) + "} ...")
        elif not action.option_strings:
            parts.append(action.metavar or action.dest)
        else:
            flag = max(action.option_strings, key=len)
            parts.append(f"[{flag}]" if action.nargs == 0 else f"[{flag} {action.metavar or action.dest.upper()}]")
    return " ".join(parts)


def _rows(p: argparse.ArgumentParser) -> list[list[str]]:
    rows = []
    for action in _own_actions(p):
        if isinstance(action, argparse._SubParsersAction):
            continue
        name = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.metavar or action.dest}`"
        default = action.default
        shown = "" if default in (None, False, argparse.SUPPRESS) or action.nargs == 0 else f"`{default}`"
        choices = ", ".join(f"`{c}`" for c in action.choices) if action.choices else ""
        rows.append([name, (action.help or "").replace("%(default)s", str(default)), shown, choices])
    return rows


def _describe(p: argparse.ArgumentParser, prog: str, level: int) -> list[str]:
    out = [
        f"{'#' * level} `{prog.removeprefix('manage.py ')}`",
        "",
        # A command's help may be its module docstring: wrapped lines make one paragraph.
        " ".join((p.description or "").split()) or "_No help text._",
        "",
    ]
    out += ["```sh", _usage(p, f"python {prog}"), "```", ""]
    if rows := _rows(p):
        out += [table(["argument", "meaning", "default", "choices"], rows), ""]
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                out += _describe(sub, f"{prog} {sub_name}", level + 1)
    return out


def generate(live: bool = False) -> GeneratedPage:
    commands = project_commands()
    missing: list[str] = []
    inputs = []
    for name, app in commands.items():
        try:
            inputs.append([name, app, "\n".join(_describe(parser(name, app), f"manage.py {name}", 2))])
        except Exception as exc:  # noqa: BLE001  (one broken command must not hide the others)
            missing.append(f"command {name}: {exc.__class__.__name__}: {exc}")
    body = "\n\n".join(
        [
            "The project's management commands (`python manage.py NAME`, or `embedportal NAME` in the "
            "container image), from their argument parsers. Every command also takes Django's common "
            "options (`-v/--verbosity`, `--settings`, `--pythonpath`, `--traceback`, `--no-color`, "
            "`--force-color`, `--skip-checks`).",
            table(["command", "app"], [[f"[`{n}`](#{n})", a] for n, a in commands.items()]),
            *(text for _, _, text in inputs),
        ]
    )
    sources = ["*/management/commands/*.py"]
    return GeneratedPage(PATH, "Management commands reference", __name__, inputs, body, sources, missing=missing)
