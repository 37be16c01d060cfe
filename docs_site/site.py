"""`manage.py docs build`: the mkdocs site, with the generated pages rendered live
(notes: docs/architecture.md, "Module notes")."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from django.conf import settings

from docs_site import freshness
from docs_site import pages as doc_pages
from docs_site.generators import EmbeddingPipelineOperationsDocGenerator
from docs_site.history import MANIFEST, History, sha256_file
from embedportal.version import code_version

CONFIG = "mkdocs.yml"


def manifest(history: History, root: Path) -> dict:
    """Per page its update time and covered items' hashes as of its last commit; per file its hash and
    change time. In a container (no .git) freshness compares against these, as in the repository."""
    pages: dict[str, dict] = {}
    files: set[str] = set()
    for page in doc_pages.all_pages(root):
        items, _ = freshness.covered_items(page.meta, history)
        repo_path = freshness._repo_path(page.path, history, root)
        baseline = history.last_commit(repo_path)
        covers = {item.key: item.digest(history, baseline) for item in items}
        files.update(item.file for item in items)
        pages[page.path] = {"updated_at": freshness.page_updated(page.path, history, root), "covers": covers}
        files.add(repo_path)
    return {
        "built_at": time.time(),
        "code_version": code_version(),
        "from_git": history.git,
        "pages": pages,
        "files": {
            f: {"sha256": sha256_file(history.root / f), "changed_at": history.changed_at(f)}
            for f in sorted(files)
            if (history.root / f).is_file()
        },
    }


def build(site_dir: Path, live: bool = True) -> int:
    """Build the site into `site_dir`; the number of pages."""
    from mkdocs.commands.build import build as mkdocs_build
    from mkdocs.config import load_config

    source = Path(settings.EMBEDPORTAL_DOCS_DIR)
    staging = site_dir.parent / f".{site_dir.name}-src"
    shutil.rmtree(staging, ignore_errors=True)  # a failed build's leftovers
    shutil.copytree(source, staging)
    if live:
        # Without live sections the committed pages are the site (`docs check` keeps them current);
        # re-rendering them could only lose sources a build machine lacks (kubectl in the image).
        EmbeddingPipelineOperationsDocGenerator(staging).write(live=True)
    data = manifest(History(), source)
    config = load_config(str(settings.BASE_DIR / CONFIG), docs_dir=str(staging), site_dir=str(site_dir), strict=True)
    mkdocs_build(config)
    (site_dir / MANIFEST).write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    shutil.rmtree(staging)
    return len(data["pages"])
