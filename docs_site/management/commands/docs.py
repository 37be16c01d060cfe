"""manage.py docs generate|check|build: the documentation generated from the running code."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from docs_site import coverage, freshness, site
from docs_site.choices import Freshness, PageKind
from docs_site.generators import EmbeddingPipelineOperationsDocGenerator


class Command(BaseCommand):
    help = (
        "Generate the reference pages (generate), check the committed pages against the code and "
        "report stale pages and coverage (check), or build the site served under /docs/ (build)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{generate,check,build}")
        generate = sub.add_parser("generate", help="write docs/reference/*.md from the code")
        generate.description = "Write the generated reference pages (docs/reference/) from the code; commit them."
        check = sub.add_parser("check", help="exit 1 when a generated page differs from what the code generates")
        check.description = (
            "Compare every committed generated page with what the code generates now (exit 1 naming the "
            "pages and why), report stale and review-due pages and coverage, and store the results."
        )
        check.add_argument("--strict", action="store_true", help="also exit 1 when a hand-written page is stale")
        check.add_argument("--no-record", action="store_true", help="do not store the results in the database")
        build = sub.add_parser("build", help="build the site (generated pages rendered live) with mkdocs")
        build.description = "Build the mkdocs site, generated pages rendered live, into EMBEDPORTAL_DOCS_SITE_DIR."
        build.add_argument("--site-dir", type=Path, help="where to write the site (default: EMBEDPORTAL_DOCS_SITE_DIR)")
        build.add_argument("--no-live", action="store_true", help="render the generated pages as committed")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        getattr(self, f"_{action}")(**options)

    def _generate(self, **options: Any) -> None:
        written = EmbeddingPipelineOperationsDocGenerator().write()
        for path in written:
            self.stdout.write(f"wrote {path}")
        self.stdout.write(f"{len(written)} page(s) changed")

    def _check(self, strict: bool = False, no_record: bool = False, **options: Any) -> None:
        statuses = freshness.check_pages()
        coverages = coverage.measure()
        if not no_record:
            freshness.record(statuses)
            coverage.record(coverages)
        for s in statuses:
            if s.status != Freshness.FRESH:
                self.stdout.write(f"{s.status}: {s.path}: {s.reason}")
        for c in coverages:
            more = ", ..." if len(c.missing) > 8 else ""
            missing = f" (missing: {', '.join(c.missing[:8])}{more})" if c.missing else ""
            self.stdout.write(f"coverage {c.kind}: {c.documented}/{c.existing}{missing}")
        # A generated page that differs always fails the check; a stale hand-written one with --strict.
        problems = [
            f"{s.path}: {s.reason}"
            for s in statuses
            if s.status == Freshness.STALE and (strict or s.kind == PageKind.GENERATED)
        ]
        if problems:
            raise CommandError(
                "documentation out of date (run `manage.py docs generate` for generated pages):\n" + "\n".join(problems)
            )
        self.stdout.write(f"{len(statuses)} pages checked; generated pages match the code")

    def _build(self, site_dir: Path | None = None, no_live: bool = False, **options: Any) -> None:
        started = time.monotonic()
        site_dir = site_dir or Path(settings.EMBEDPORTAL_DOCS_SITE_DIR)
        pages = site.build(site_dir, live=not no_live)
        self.stdout.write(f"built {pages} pages into {site_dir} in {time.monotonic() - started:.1f} s")
