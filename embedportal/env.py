"""Reading the environment: the `env_*` helpers settings.py reads every variable through, with
the defaults of the settings registry (embedportal/config.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from embedportal.config import SETTINGS


def _default(name: str, default: Any) -> Any:
    """An explicit default wins (the provider-key variables collections name are not registered)."""
    if default is not None:
        return default
    return SETTINGS[name].default if name in SETTINGS else ""


def env_str(name: str, default: str | None = None) -> str:
    return os.environ.get(name) or str(_default(name, default))


def env_bool(name: str, default: bool | None = None) -> bool:
    return env_str(name, default).strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int | None = None) -> int:
    return int(env_str(name, default))


def env_float(name: str, default: float | None = None) -> float:
    return float(env_str(name, default))


def env_list(name: str, default: str | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        raw = str(_default(name, default))
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_secret(name: str, default: str | None = None) -> str:
    """Read a secret from the file named by NAME_FILE (Kubernetes/Docker secrets), else NAME."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return env_str(name, default)
