"""Reading the environment: the `env_*` helpers settings.py reads every variable through, with
the defaults of the settings registry (embedportal/config.py)."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from embedportal.config import SETTINGS

BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _default(name: str) -> str:
    """The registry's default; "" for a variable it does not list (the provider-key variables collections name)."""
    return str(SETTINGS[name].default) if name in SETTINGS else ""


def env_str(name: str) -> str:
    return os.environ.get(name) or _default(name)


def _refused(name: str, raw: str, wanted: str) -> ImproperlyConfigured:
    # A typo stops the process at start naming the variable, not a bare ValueError (or a silent False).
    return ImproperlyConfigured(f"{name}={raw!r}: expected {wanted}")


def env_bool(name: str) -> bool:
    raw = env_str(name).strip().lower()
    if raw not in BOOLEANS:
        raise _refused(name, raw, "true or false (also 1/0, yes/no, on/off)")
    return BOOLEANS[raw]


def _zero_ok(name: str) -> bool:
    return SETTINGS[name].zero_ok if name in SETTINGS else True


def env_int(name: str) -> int:
    raw, zero = env_str(name).strip(), _zero_ok(name)
    if not (raw.isascii() and raw.isdigit() and (int(raw) > 0 or zero)):
        raise _refused(name, raw, f"a whole number, {0 if zero else 1} or more")
    return int(raw)


def env_float(name: str) -> float:
    raw, zero = env_str(name).strip(), _zero_ok(name)
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and (value > 0 or value == 0 and zero)):
        raise _refused(name, raw, "a number, 0 or more" if zero else "a number above 0")
    return value


def env_networks(name: str) -> list[str]:
    """A list of CIDRs or addresses: each checked, so a typo does not fail every request that reads it."""
    networks = env_list(name)
    for net in networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise _refused(name, net, "CIDRs or addresses, comma-separated (10.0.0.0/8,192.168.1.7)") from None
    return networks


# A host name or [IPv6 address] and an optional port; a provider key variable's binding starts "VARIABLE=".
HOST = r"(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>\d{1,5}))?"
VARIABLE = r"(?P<variable>[A-Za-z_]\w*)="


def _entries(name: str, pattern: str, wanted: str) -> list[dict[str, str]]:
    """The parts of each comma-separated entry, matched whole by `pattern` (a port in range); else refused."""
    entries = []
    for entry in env_list(name):
        match = re.fullmatch(pattern, entry, re.ASCII)
        if not match or not 0 < int(match.groupdict().get("port") or 1) < 65536:
            raise _refused(name, entry, wanted)
        entries.append(match.groupdict())
    return entries


def _host(entry: dict[str, str]) -> tuple[str, int | None]:
    """(host, port or None for any port)."""
    return entry["host"].strip("[]").lower(), int(entry["port"]) if entry["port"] else None


def env_key_teams(name: str) -> dict[str, frozenset[str]]:
    """Each provider key variable's teams (group names), from comma-separated `VARIABLE=team` entries."""
    wanted = "VARIABLE=team, comma-separated (ACME_OPENAI_KEY=acme,SHARED_KEY=acme)"
    bound: dict[str, set[str]] = {}
    for entry in _entries(name, VARIABLE + "(?P<team>[^=]+)", wanted):
        bound.setdefault(entry["variable"], set()).add(entry["team"].strip())
    return {variable: frozenset(teams) for variable, teams in bound.items()}


def env_key_hosts(name: str) -> dict[str, frozenset[tuple[str, int | None]]]:
    """Each provider key variable's hosts, from comma-separated `VARIABLE=host[:port]` entries (a variable
    repeated for more hosts)."""
    wanted = "VARIABLE=host or VARIABLE=host:port, comma-separated (GATEWAY_KEY=gw.internal:8443)"
    bound: dict[str, set[tuple[str, int | None]]] = {}
    for entry in _entries(name, VARIABLE + HOST, wanted):
        bound.setdefault(entry["variable"], set()).add(_host(entry))
    return {variable: frozenset(hosts) for variable, hosts in bound.items()}


def env_hosts(name: str) -> frozenset[tuple[str, int | None]]:
    """(host, port or None for any port) from comma-separated `host` or `host:port` entries."""
    wanted = "host or host:port, comma-separated (llm-gw.internal:8443,tei.internal)"
    return frozenset(map(_host, _entries(name, HOST, wanted)))


def env_list(name: str) -> list[str]:
    # Set but empty is an empty list, not the default.
    raw = os.environ.get(name, _default(name))
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_secret(name: str) -> str:
    """Read a secret from the file named by NAME_FILE (Kubernetes/Docker secrets), else NAME."""
    path = os.environ.get(f"{name}_FILE")
    return Path(path).read_text().strip() if path else env_str(name)
