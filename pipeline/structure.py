"""A document's structure for contextual chunks: YAML front matter (metadata, not chunk text), its
title, and the markdown or reST heading path above any point of its text."""

from __future__ import annotations

import bisect
import itertools
import re

import yaml

FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*$\r?\n?", re.S | re.M)
MARKDOWN_HEADING = re.compile(r"#{1,6}[ \t]+(.+?)[ \t#]*")
FENCE = re.compile(r"(```|~~~)")
# reST adornment: one punctuation character repeated (docutils accepts any of these).
ADORNMENT = re.compile(r"([=\-~^\"'`*+#:.<>_])\1{2,}[ \t]*")


def front_matter(text: str) -> tuple[dict, str]:
    """(the YAML mapping between leading `---` lines, the text after it); ({}, text) if there is none."""
    match = FRONT_MATTER.match(text)
    try:
        fields = yaml.safe_load(match.group(1)) if match else None
    except yaml.YAMLError:
        fields = None
    return (fields, text[match.end() :]) if isinstance(fields, dict) else ({}, text)


def only_front_matter(text: str) -> bool:
    """Whether `text` is YAML front matter and nothing else (the YAML read only when no body follows)."""
    match = FRONT_MATTER.match(text)
    return bool(match) and not text[match.end() :].strip() and bool(front_matter(text)[0])


def headings(text: str) -> list[tuple[int, int, str]]:
    """(character offset, level, title) of each markdown ATX heading (outside code fences) and reST
    section title (underlined, optionally overlined; levels in order of first appearance)."""
    found: list[tuple[int, int, str]] = []
    styles: list[tuple[str, bool]] = []
    lines = text.splitlines(keepends=True)
    offsets = [0, *itertools.accumulate(len(line) for line in lines)]
    fenced = False
    for i, raw in enumerate(lines):
        line = raw.rstrip()
        if FENCE.match(line):
            fenced = not fenced
        if fenced or not line or line[0].isspace():
            continue
        if (md := MARKDOWN_HEADING.fullmatch(line)) and not ADORNMENT.fullmatch(line):
            found.append((offsets[i], line.index(" ") if " " in line else 1, md.group(1)))
            continue
        under = lines[i + 1].rstrip() if i + 1 < len(lines) else ""
        if ADORNMENT.fullmatch(under) and len(under) >= len(line) and not ADORNMENT.fullmatch(line):
            over = i > 0 and lines[i - 1].rstrip() == under
            style = (under[0], over)
            if style not in styles:
                styles.append(style)
            found.append((offsets[i - 1 if over else i], styles.index(style) + 1, line.strip()))
    return found


# Every chunk carries its document's title and heading path (stored, keyword-indexed, embedded with
# contextual chunks): a 960,000-character heading made 3 billion characters to embed for one document,
# and a tsvector over PostgreSQL's 1 MB that failed its whole batch. Bounded, they still name the page.
CONTEXT_CHARS = 200
CONTEXT_HEADINGS = 8


def _bounded(title: str) -> str:
    return title if len(title) <= CONTEXT_CHARS else title[: CONTEXT_CHARS - 1].rstrip() + "…"


class Outline:
    """The heading path at any offset of one text, and its title."""

    def __init__(self, text: str, name: str, fields: dict | None = None) -> None:
        self.headings = [(offset, level, _bounded(title)) for offset, level, title in headings(text)]
        self.starts = [offset for offset, _, _ in self.headings]
        title = (fields or {}).get("title")
        # A scalar only: str() of a YAML list expands its aliases (a 437-byte "billion laughs" front
        # matter made a 312-million-character title).
        title = str(title).strip() if isinstance(title, str | int | float) and not isinstance(title, bool) else ""
        first = self.headings[0][2] if self.headings else None
        self.title = _bounded(title or first or name)

    def path(self, offset: int) -> tuple[str, ...]:
        """Titles of the sections enclosing `offset`, outermost first (the document title left out)."""
        stack: list[tuple[int, str]] = []
        for _, level, title in self.headings[: bisect.bisect_right(self.starts, offset)]:
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
        return tuple(title for _, title in stack if title != self.title)[-CONTEXT_HEADINGS:]
