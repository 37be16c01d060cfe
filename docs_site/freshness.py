"""Which pages are fresh, stale or due for review, and by how much they lag
(notes: docs/architecture.md, "Module notes")."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.core.management import get_commands
from django.utils import timezone

from docs_site import pages as doc_pages
from docs_site.choices import Freshness, PageKind
from docs_site.generators import MODULES, EmbeddingPipelineOperationsDocGenerator
from docs_site.generators.alerts import alert_rules, parse_rules
from docs_site.history import History
from docs_site.models import DocPage, store_check
from embedportal.config import SETTINGS

CONFIG_FILES = ("embedportal/config.py", "embedportal/config_operations.py")  # the settings registry
_TOKENS = re.compile(r""""(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|[()]""")


def setting_entry(text: str, name: str) -> str | None:
    """The registry entry `Setting("NAME", ...)`, layout normalised; found textually, so that a broken
    commit's file still compares entry by entry."""
    match = re.search(r"Setting\(\s*" + re.escape(f'"{name}"'), text)
    if not match:
        return None
    depth = 0
    for token in _TOKENS.finditer(text, match.start() + len("Setting")):
        depth += {"(": 1, ")": -1}.get(token.group(), 0)
        if depth == 0:
            entry = text[match.start() : token.end()]
            return re.sub(r",?\s*\)$", ")", re.sub(r"\s+", " ", entry).replace("( ", "("))
    return None


@dataclass
class Item:
    """One thing a page covers, resolved to the file that defines it."""

    key: str  # e.g. "setting:EMBEDPORTAL_CLAIM_BATCH"
    file: str  # repository path; "" when the item does not exist
    kind: str

    def extract(self, text: str) -> str | None:
        """The item's definition within the file's text (None: not there)."""
        name = self.key.split(":", 1)[1]
        if self.kind == "setting":
            return setting_entry(text, name)
        if self.kind == "alert":
            try:
                data = parse_rules(text) or {}
            except yaml.YAMLError:
                return text  # a version that does not parse: compare the whole file
            rules = (rule for group in data.get("groups", []) for rule in group.get("rules", []))
            return next((json.dumps(r, sort_keys=True, default=str) for r in rules if r.get("alert") == name), None)
        return text

    def digest(self, history: History, commit: str | None) -> str:
        """sha256 of the item's definition at `commit` (None: now), "" where it is not there; a setting's
        read from every registry file."""
        files = CONFIG_FILES if self.kind == "setting" else (self.file,)
        texts = [t for f in files if (t := history.text_at(commit, f)) is not None]
        value = self.extract("\n".join(texts)) if texts else None
        return hashlib.sha256(value.encode()).hexdigest() if value is not None else ""


def _command_file(name: str) -> str:
    """The command's file in the repository; "" for Django's and third parties' commands."""
    app = get_commands().get(name)
    file = f"{app.replace('.', '/')}/management/commands/{name}.py" if app else ""
    return file if file and (settings.BASE_DIR / file).is_file() else ""


def _setting_file(name: str, root: Path) -> str:
    if name not in SETTINGS:
        return ""
    return next((f for f in CONFIG_FILES if f'"{name}"' in (root / f).read_text(encoding="utf-8")), "")


def covered_items(meta: dict[str, Any], history: History) -> tuple[list[Item], list[str]]:
    """The items a page's front matter covers, and the ones that do not exist (any more)."""
    covers = meta.get("covers") or {}
    items: list[Item] = []
    unknown: list[str] = []
    for pattern in covers.get("files", []):
        files = history.expand(pattern)
        if not files:
            unknown.append(f"file {pattern}")
        items += [Item(f"file:{f}", f, "file") for f in files]
    rules = {r.name: r.file for r in alert_rules(history.root)}
    where = {
        "setting": lambda name: _setting_file(name, history.root),
        "alert": lambda name: rules.get(name, ""),
        "command": _command_file,
    }
    for kind, find in where.items():
        for pattern in covers.get(f"{kind}s", []):
            for name in sorted(rules) if kind == "alert" and pattern == "*" else [pattern]:
                if file := find(name):
                    items.append(Item(f"{kind}:{name}", file, kind))
                else:
                    unknown.append(f"{kind} {name}")
    return items, unknown


def _dt(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, tz=UTC) if ts is not None else None


def page_updated(path: str, history: History, root: Path) -> float | None:
    # Without Git, the page's update time the build recorded (there is a manifest only then).
    recorded = history.manifest.get("pages", {}).get(path, {})
    return recorded.get("updated_at") or history.changed_at(_repo_path(path, history, root))


def _repo_path(path: str, history: History, root: Path) -> str:
    """The page's path in the repository (the docs folder is inside it)."""
    full = root.resolve() / path
    return (full.relative_to(history.root) if full.is_relative_to(history.root) else full).as_posix()


def _newest(paths: list[str], history: History) -> float | None:
    return max((t for p in paths if (t := history.changed_at(p)) is not None), default=None)


def check_generated(
    path: str, page: doc_pages.Page | None, generator: EmbeddingPipelineOperationsDocGenerator, history: History
) -> DocPage:
    """The generated page at `path` against what the code generates now; `page` None: not there."""
    generated = MODULES[path].generate()
    updated = page_updated(path, history, generator.root)
    # The generator's own module dates the page too.
    patterns = [*generated.sources, generated.generator.replace(".", "/") + ".py"]
    newest = _newest([f for pattern in patterns for f in history.expand(pattern)], history)
    status = DocPage(path=path, title=generated.title, kind=PageKind.GENERATED, status=Freshness.FRESH)
    status.inputs_hash = str(page.meta.get("inputs_sha256", "")) if page else ""
    status.last_updated, status.source_changed_at = _dt(updated), _dt(newest)
    if drift := generator.drift(generated):
        status.status, status.reason = Freshness.STALE, drift
        # A page never generated has no update to lag from: the least lag that is not fresh.
        status.lag_seconds = max(1.0, (newest or 0) - (updated or newest or 0))
    elif generated.missing:
        status.reason = "generated without: " + "; ".join(generated.missing)
    return status


def check_handwritten(page: doc_pages.Page, history: History, now: datetime, root: Path) -> DocPage:
    repo_path = _repo_path(page.path, history, root)
    updated = page_updated(page.path, history, root)
    status = DocPage(
        path=page.path, title=page.title, kind=page.kind, status=Freshness.FRESH, last_updated=_dt(updated)
    )
    items, unknown = covered_items(page.meta, history)
    if history.git:
        # No baseline when the page itself has uncommitted edits: it is being updated now.
        baseline = history.last_commit(repo_path)
        before = {i.key: i.digest(history, baseline) for i in items} if baseline else {}
    else:  # what the manifest recorded; an item it lacks has nothing to compare with
        before = history.manifest.get("pages", {}).get(page.path, {}).get("covers", {})
    changed = [i for i in items if i.key in before and before[i.key] != i.digest(history, None)]
    newest = _newest([i.file for i in items], history)
    status.source_changed_at = _dt(newest)
    reasons = []
    if changed:
        reasons.append("changed since the page was last updated: " + ", ".join(i.key for i in changed))
        status.lag_seconds = max(1.0, (_newest([i.file for i in changed], history) or 0) - (updated or 0))
    if unknown:
        reasons.append("covers what does not exist: " + ", ".join(unknown))
        status.lag_seconds = max(status.lag_seconds, 1.0)
    status.changed = [i.key for i in changed]  # not stored: the reason names them
    if reasons:
        status.status, status.reason = Freshness.STALE, "; ".join(reasons)
        return status
    reviewed = page.meta.get("reviewed")
    reviewed_at = datetime.combine(reviewed, datetime.min.time(), UTC) if isinstance(reviewed, date) else _dt(updated)
    reviewed_at = reviewed_at or now
    interval = int(page.meta.get("review_interval_days") or settings.EMBEDPORTAL_DOCS_REVIEW_DAYS)
    status.review_due_at = reviewed_at + timedelta(days=interval)
    if now > status.review_due_at:
        status.status = Freshness.REVIEW_DUE
        status.reason = f"last reviewed {reviewed_at.date()}, review interval {interval} days"
    return status


def check_pages(root: Path | None = None, history: History | None = None) -> list[DocPage]:
    history = history or History()
    root = root or doc_pages.docs_dir()
    generator = EmbeddingPipelineOperationsDocGenerator(root)
    now = timezone.now()
    pages = {page.path: page for page in doc_pages.all_pages(root)}
    statuses = [check_generated(path, pages.get(path), generator, history) for path in MODULES]
    return statuses + [check_handwritten(p, history, now, root) for path, p in pages.items() if path not in MODULES]


def record(statuses: list[DocPage]) -> None:
    stored = [f.name for f in DocPage._meta.fields if f.name not in ("id", "path", "checked_at")]
    store_check(
        DocPage, "path", {s.path: {f: getattr(s, f) for f in stored} | {"title": s.title[:300]} for s in statuses}
    )
