"""Configuration reference: every setting in the registry (embedportal/config.py), and, live,
the current values (secrets redacted). Not the collections: every team reads the docs, and a
collection's configuration is its team's (the admin and the API show it to them)."""

from __future__ import annotations

import os

from docs_site.generators.base import GeneratedPage, table
from embedportal.config import SETTINGS

PATH = "reference/configuration.md"


def current_value(name: str) -> str:
    """What this process reads (a secret only as set or unset, even from NAME_FILE)."""
    setting = SETTINGS[name]
    if setting.secret:
        return "set" if os.environ.get(name) or os.environ.get(f"{name}_FILE") else "unset"
    return os.environ.get(name) or f"{setting.shown_default()} (default)".strip()


def generate(live: bool = False) -> GeneratedPage:
    # The table is what is hashed.
    rows = [
        [
            f"`{s.name}`",
            s.kind,
            f"`{s.shown_default()}`" if s.shown_default() else "",
            "yes" if s.secret else "",
            s.description,
        ]
        for s in sorted(SETTINGS.values(), key=lambda s: s.name)
    ]
    body = "\n\n".join(
        [
            "Every environment variable the app reads, from the settings registry that "
            "`embedportal/settings.py` itself reads through (`embedportal/config.py`). A secret may "
            "instead be read from the file `NAME_FILE` names (Kubernetes and Docker secrets), e.g. "
            "`DATABASE_URL_FILE=/run/secrets/db`. Provider API keys are never stored: a collection "
            "names the variable holding its key (`api_key_env`), read at call time.",
            "## Settings",
            table(["variable", "type", "default", "secret", "meaning"], rows),
        ]
    )
    sources = ["embedportal/config.py", "embedportal/config_operations.py", "embedportal/settings.py"]
    page = GeneratedPage(PATH, "Configuration reference", __name__, rows, body, sources)
    if live:
        current = table(["variable", "value"], [[f"`{name}`", current_value(name)] for name in sorted(SETTINGS)])
        page.live_body = "\n\n".join(
            ["## Current values", "What this process reads now (secrets show only whether they are set).", current]
        )
    return page
