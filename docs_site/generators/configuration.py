"""Configuration reference: every setting in the registry (embedportal/config.py), and, live,
the current values (secrets redacted) and every collection's configuration."""

from __future__ import annotations

import os

from django.db import DatabaseError

from docs_site.generators.base import GeneratedPage, table
from embedportal.config import SETTINGS

PATH = "reference/configuration.md"


def current_value(name: str) -> str:
    """What this process reads (a secret only as set or unset, even from NAME_FILE)."""
    setting = SETTINGS[name]
    if setting.secret:
        return "set" if os.environ.get(name) or os.environ.get(f"{name}_FILE") else "unset"
    return os.environ.get(name) or f"{setting.shown_default()} (default)".strip()


def _collections_section() -> tuple[str, list[str]]:
    from pipeline.models import Collection

    try:
        collections = list(Collection.objects.order_by("name"))
    except DatabaseError as exc:
        return "", [f"database (collections): {exc.__class__.__name__}"]
    columns = {
        "collection": lambda c: c.name,
        "model": lambda c: c.model,
        "dimensions": lambda c: c.dimensions,
        "chunking": lambda c: f"{c.chunking_strategy} {c.chunk_size}/{c.chunk_overlap} {c.chunk_unit}",
        "batch": lambda c: c.batch_size,
        "freshness SLA": lambda c: c.freshness_sla,
        "state": lambda c: "paused" if c.paused else "active",
        "API base": lambda c: c.api_base or "",
        "key variable": lambda c: f"`{c.api_key_env}`" if c.api_key_env else "",
        "extra params": lambda c: ", ".join(sorted(c.extra_params)) if c.extra_params else "",
    }
    rows = [[value(c) for value in columns.values()] for c in collections]
    return "## Collections\n\n" + (table(list(columns), rows) if rows else "No collections yet."), []


def generate(live: bool = False) -> GeneratedPage:
    inputs = [
        {"name": s.name, "kind": s.kind, "default": s.shown_default(), "secret": s.secret, "description": s.description}
        for s in sorted(SETTINGS.values(), key=lambda s: s.name)
    ]
    # The table shows exactly what is hashed.
    rows = [
        [
            f"`{i['name']}`",
            i["kind"],
            f"`{i['default']}`" if i["default"] else "",
            "yes" if i["secret"] else "",
            i["description"],
        ]
        for i in inputs
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
    page = GeneratedPage(PATH, "Configuration reference", __name__, inputs, body, sources)
    if live:
        collections, page.live_missing = _collections_section()
        current = table(["variable", "value"], [[f"`{name}`", current_value(name)] for name in sorted(SETTINGS)])
        page.live_body = "\n\n".join(
            [
                "## Current values",
                "What this process reads now (secrets show only whether they are set).",
                current,
                collections,
            ]
        )
    return page
