"""EmbeddingPipelineOperationsDocGenerator: the reference pages, generated from the running code
(notes: docs/architecture.md, "Module notes")."""

from __future__ import annotations

import difflib
from pathlib import Path

from docs_site.generators import access, alerts, api, architecture, commands, configuration, metrics
from docs_site.generators.base import GeneratedPage
from docs_site.pages import docs_dir, split_front_matter

MODULES = {m.PATH: m for m in (architecture, configuration, api, access, metrics, alerts, commands)}


class EmbeddingPipelineOperationsDocGenerator:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or docs_dir()

    def pages(self, live: bool = False) -> list[GeneratedPage]:
        return [module.generate(live=live) for module in MODULES.values()]

    def write(self, live: bool = False) -> list[str]:
        """Write every page whose text changed; returns the paths written."""
        written = []
        for page in self.pages(live):
            file = self.root / page.path
            text = page.render(live)
            if not file.exists() or file.read_text(encoding="utf-8") != text:
                file.parent.mkdir(parents=True, exist_ok=True)
                file.write_text(text, encoding="utf-8")
                written.append(page.path)
        return written

    def drift(self, page: GeneratedPage) -> str | None:
        """Why the committed page differs from what the code generates now (None: it does not)."""
        file = self.root / page.path
        text = page.render()
        if not file.exists():
            return "not generated yet (run `manage.py docs generate`)"
        committed = file.read_text(encoding="utf-8")
        if committed == text:
            return None
        meta = split_front_matter(committed)[0]
        if set(page.missing) - set(meta.get("missing_sources") or []):
            # This environment lacks a source the committed page was generated from (kubectl in the
            # image): the difference says nothing about the code. Where the source is, it is compared.
            return None
        recorded = meta.get("inputs_sha256", "")
        if recorded != page.inputs_hash:
            why = f"inputs changed (sha256 {str(recorded)[:12] or 'none'} -> {page.inputs_hash[:12]})"
        else:
            why = "same inputs, different text (the generator changed or the page was edited by hand)"
        changed = [
            line
            for line in difflib.unified_diff(committed.splitlines(), text.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        ]
        sample = "; ".join(line[:100] for line in changed[:4])
        return f"{why}: {sample}" if sample else why
