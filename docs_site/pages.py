"""The pages of the documentation folder: discovery, front matter, and safe lookup by path."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

from docs_site.choices import PageKind

FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)
H1 = re.compile(r"^# (.+)$", re.MULTILINE)


class PageNotFound(LookupError):
    pass


class UnsafePath(ValueError):
    pass


def docs_dir() -> Path:
    return Path(settings.EMBEDPORTAL_DOCS_DIR)


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    match = FRONT_MATTER.match(text)
    if not match:
        return {}, text
    meta = yaml.safe_load(match.group(1)) or {}
    return (meta if isinstance(meta, dict) else {}), text[match.end() :]


@dataclass
class Page:
    path: str  # relative to the docs folder, with forward slashes
    text: str
    meta: dict[str, Any]
    body: str

    @property
    def kind(self) -> str:
        kind = self.meta.get("kind")
        if kind in PageKind.values:
            return kind
        return PageKind.RUNBOOK if self.path.startswith("runbooks/") else PageKind.GUIDE

    @property
    def title(self) -> str:
        if self.meta.get("title"):
            return str(self.meta["title"])
        match = H1.search(self.body)
        return match.group(1).strip() if match else self.path


def load(file: Path, root: Path) -> Page:
    text = file.read_text(encoding="utf-8")
    meta, body = split_front_matter(text)
    return Page(path=file.relative_to(root).as_posix(), text=text, meta=meta, body=body)


def all_pages(root: Path) -> list[Page]:
    return [load(f, root) for f in sorted(root.rglob("*.md")) if f.is_file()] if root.is_dir() else []


def resolve(path: str, root: Path | None = None) -> Path:
    """The file of a page given relative to the docs folder; UnsafePath for anything that could leave
    it (absolute, `..`, backslashes, NUL, symlinks out), PageNotFound for a page that is not there."""
    root = (root or docs_dir()).resolve()
    parts = path.split("/")  # an empty part: an empty or absolute path, or "//"
    if "\x00" in path or "\\" in path or re.match(r"^[A-Za-z]:", path) or any(p in ("..", "") for p in parts):
        raise UnsafePath(f"page must be a relative path inside the docs folder, not {path!r}")
    candidate = root.joinpath(*parts)
    if not candidate.resolve().is_relative_to(root):
        raise UnsafePath(f"page {path!r} points outside the docs folder")
    if candidate.suffix != ".md" or not candidate.is_file():
        raise PageNotFound(f"no documentation page {path!r}")
    return candidate


def get(path: str, root: Path | None = None) -> Page:
    root = root or docs_dir()
    return load(resolve(path, root), root.resolve())
