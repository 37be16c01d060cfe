"""Fetch the benchmark corpus (the Django documentation) into EMBEDPORTAL_CORPUS_DIR, once: benchmarks never
download at run time (the image runs this at build)."""

from __future__ import annotations

import subprocess
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from testing import corpus


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args: Any, **o: Any) -> None:
        try:
            paths = corpus.fetch()
        except subprocess.CalledProcessError as exc:
            raise CommandError(f"could not download Django {corpus.DJANGO_VERSION}'s source: {exc}") from None
        self.stdout.write(f"{len(paths)} files of the django-docs corpus in {settings.EMBEDPORTAL_CORPUS_DIR}")
