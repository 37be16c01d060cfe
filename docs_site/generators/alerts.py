"""Alert rules (grafana/prometheus/*.rules.yml), each with the runbook section its `runbook_url` points at."""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from django.conf import settings
from markdown.extensions.toc import slugify

from docs_site.generators.base import GeneratedPage, table
from docs_site.pages import PageNotFound, UnsafePath, resolve, split_front_matter

PATH = "reference/alerts.md"
RULES_GLOB = "grafana/prometheus/*.rules.yml"
RUNBOOK_SECTIONS = ("Meaning", "Impact", "Diagnosis", "Mitigation")
# The site is served by the app under /docs/ (mkdocs directory URLs: page.md -> page/).
SITE_PREFIX = "/docs/"
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


@dataclass
class AlertRule:
    name: str
    file: str
    expr: str
    duration: str
    labels: dict[str, Any]
    annotations: dict[str, Any]

    @property
    def runbook_url(self) -> str:
        return str(self.annotations.get("runbook_url", ""))


@functools.lru_cache(maxsize=64)
def _parsed_rules(text: str) -> Any:
    return yaml.safe_load(text)


def parse_rules(text: str) -> Any:
    """A rule file's YAML, parsed once per distinct text (a copy: the caller may change it). A
    documentation check reads the same few rule files for every page and for every alert a page
    covers, at its last commit and now: some 430 parses of about ten texts, most of its time."""
    return copy.deepcopy(_parsed_rules(text))


def alert_rules(root: Path | None = None) -> list[AlertRule]:
    root = root or settings.BASE_DIR
    return [
        AlertRule(
            name=rule["alert"],
            file=path.relative_to(root).as_posix(),
            expr=str(rule.get("expr", "")).strip(),
            duration=str(rule.get("for", "")),
            labels=rule.get("labels", {}),
            annotations=rule.get("annotations", {}),
        )
        for path in sorted(root.glob(RULES_GLOB))
        for group in (parse_rules(path.read_text(encoding="utf-8")) or {}).get("groups", [])
        for rule in group.get("rules", [])
        if "alert" in rule
    ]


def page_of_url(url: str) -> tuple[str, str]:
    """(page path relative to the docs folder, anchor) a runbook URL points at."""
    parts = urlsplit(url)
    if not parts.path.startswith(SITE_PREFIX):
        raise ValueError(f"{url}: not under the documentation site {SITE_PREFIX}")
    page = parts.path.removeprefix(SITE_PREFIX).strip("/")
    return (f"{page}.md" if page else "index.md"), parts.fragment


@dataclass
class Section:
    title: str
    slug: str
    level: int
    lines: list[str] = field(default_factory=list)


def sections(markdown_body: str) -> list[Section]:
    """The page's headings (slugged like mkdocs' toc, duplicates numbered) with their text."""
    found: list[Section] = []
    seen: dict[str, int] = {}
    fenced = False
    for line in markdown_body.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if match := None if fenced else HEADING.match(line):
            title = match.group(2).strip()
            slug = slugify(re.sub(r"[`*_]", "", title), "-")
            seen[slug] = seen.get(slug, -1) + 1
            slug = f"{slug}_{seen[slug]}" if seen[slug] else slug
            found.append(Section(title, slug, len(match.group(1))))
        elif found:
            found[-1].lines.append(line)
    return found


def runbook_problems(rule: AlertRule, docs: Path | None = None) -> list[str]:
    """Why the rule's runbook link does not lead to a complete runbook (empty: it does)."""
    if not rule.runbook_url:
        return ["no runbook_url annotation"]
    try:
        page_path, anchor = page_of_url(rule.runbook_url)
        file = resolve(page_path, docs)
    except (ValueError, UnsafePath, PageNotFound) as exc:
        return [str(exc)]
    if not anchor:
        return [f"{rule.runbook_url}: no #anchor"]
    all_sections = sections(split_front_matter(file.read_text(encoding="utf-8"))[1])
    index = next((i for i, s in enumerate(all_sections) if s.slug == anchor), None)
    if index is None:
        return [f"{page_path} has no heading with anchor #{anchor}"]
    level = all_sections[index].level
    children: dict[str, str] = {}
    for section in all_sections[index + 1 :]:
        if section.level <= level:
            break
        if section.level == level + 1:
            children[section.title] = "\n".join(section.lines).strip()
    return [
        f"{page_path}#{anchor}: section {name} is missing or empty"
        for name in RUNBOOK_SECTIONS
        if not children.get(name)
    ]


def _runbook_cell(rule: AlertRule) -> str:
    """A link relative to this page (works offline in the built site) when the runbook section is
    complete; otherwise what is wrong, so the site still builds."""
    if problems := runbook_problems(rule):
        return "**missing**: " + "; ".join(problems)
    page, anchor = page_of_url(rule.runbook_url)  # no problems: a page and an anchor
    return f"[runbook](../{page}#{anchor})"


def generate(live: bool = False) -> GeneratedPage:
    rules = alert_rules()
    rows = [
        [
            f"`{r.name}`",
            r.labels.get("severity", ""),
            r.duration,
            r.annotations.get("summary", ""),
            _runbook_cell(r),
            f"`{r.file}`",
        ]
        for r in rules
    ]
    details = [f"### {r.name}\n\n{r.annotations.get('description', '')}\n\n```promql\n{r.expr}\n```" for r in rules]
    body = "\n\n".join(
        [
            "Every alert rule in `grafana/prometheus/*.rules.yml`, which "
            "`deploy/generate_prometheusrule.py` copies into the Kubernetes PrometheusRule. Each "
            "links to its runbook (Meaning, Impact, Diagnosis, Mitigation).",
            table(["alert", "severity", "for", "summary", "runbook", "file"], rows),
            "## Expressions",
            *details,
        ]
    )
    return GeneratedPage(PATH, "Alerts reference", __name__, [rows, details], body, [RULES_GLOB, "docs/runbooks/*.md"])
