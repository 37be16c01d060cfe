"""Documentation coverage: documented ÷ existing, per inventory, from the running code
(notes: docs/architecture.md, "Module notes")."""

from __future__ import annotations

import ast
from pathlib import Path

from django.conf import settings

from docs_site.choices import Inventory
from docs_site.generators import alerts, api, commands, configuration, metrics
from docs_site.models import DocCoverage, store_check
from docs_site.pages import docs_dir
from embedportal import env
from embedportal.config import SETTINGS

ENV_HELPERS = {name for name in vars(env) if name.startswith("env_")}


def settings_read(path: Path | None = None) -> set[str]:
    """Variables settings.py reads through the env_* helpers or os.environ."""
    path = path or Path(settings.BASE_DIR) / "embedportal" / "settings.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = ast.unparse(node.func)
            if func in ENV_HELPERS or func in ("os.environ.get", "os.getenv"):
                names.add(str(node.args[0].value))
    return names


def _page_text(path: str, root: Path) -> str:
    return (root / path).read_text(encoding="utf-8") if (root / path).exists() else ""


def _coverage(kind: str, existing: list[str], missing: list[str]) -> DocCoverage:
    return DocCoverage(kind=kind, documented=len(existing) - len(missing), existing=len(existing), missing=missing)


def measure() -> list[DocCoverage]:
    """Per inventory, what exists and what of it is not documented (unsaved rows: `record` stores them)."""
    root = docs_dir()
    config_page, metrics_page = _page_text(configuration.PATH, root), _page_text(metrics.PATH, root)
    names = sorted(set(SETTINGS) | settings_read())
    setting_cov = _coverage(
        Inventory.SETTINGS,
        names,
        [n for n in names if n not in SETTINGS or not SETTINGS[n].description or f"`{n}`" not in config_page],
    )
    ops = api.operations(api.schema())
    endpoint_cov = _coverage(
        Inventory.ENDPOINTS,
        [f"{m} {p}" for m, p, _ in ops],
        [f"{m} {p}" for m, p, op in ops if not (op.get("summary") or op.get("description"))],
    )
    found, _ = metrics.app_metrics()
    metric_cov = _coverage(
        Inventory.METRICS,
        [m.name for m in found],
        [m.name for m in found if not m.help or f"`{m.name}`" not in metrics_page],
    )
    rules = alerts.alert_rules()
    alert_cov = _coverage(
        Inventory.ALERTS, [r.name for r in rules], [r.name for r in rules if alerts.runbook_problems(r, root)]
    )
    names = list(commands.project_commands())
    command_cov = _coverage(
        Inventory.COMMANDS, names, [n for n in names if not (commands.parser(n).description or "").strip()]
    )
    return [setting_cov, endpoint_cov, metric_cov, alert_cov, command_cov]


def record(coverages: list[DocCoverage]) -> None:
    rows = {c.kind: {"documented": c.documented, "existing": c.existing, "missing": c.missing} for c in coverages}
    store_check(DocCoverage, "kind", rows)
