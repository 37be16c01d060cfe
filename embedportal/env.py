"""Reading the environment: the `env_*` helpers settings.py reads every variable through, with
the defaults of the settings registry (embedportal/config.py)."""

from __future__ import annotations

import os
from pathlib import Path

from embedportal.config import SETTINGS


def _default(name: str) -> str:
    """The registry's default; "" for a variable it does not list (the provider-key variables collections name)."""
    return str(SETTINGS[name].default) if name in SETTINGS else ""


def env_str(name: str) -> str:
    return os.environ.get(name) or _default(name)


def env_bool(name: str) -> bool:
    return env_str(name).strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str) -> int:
    return int(env_str(name))


def env_float(name: str) -> float:
    return float(env_str(name))


def env_list(name: str) -> list[str]:
    # Set but empty is an empty list, not the default.
    raw = os.environ.get(name)
    if raw is None:
        raw = _default(name)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_secret(name: str) -> str:
    """Read a secret from the file named by NAME_FILE (Kubernetes/Docker secrets), else NAME."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return env_str(name)
