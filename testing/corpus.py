"""Benchmark corpora cached by `manage.py fetch_corpus` (at image build), never downloaded at run time nor committed."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

from django.conf import settings

DJANGO_VERSION = "5.2.19"


class CorpusMissing(ValueError):
    """The corpus is not in the cache."""


def root() -> Path:
    return settings.EMBEDPORTAL_CORPUS_DIR / f"django-{DJANGO_VERSION}-docs"


def django_docs() -> list[Path]:
    """The Django 5.2 documentation (656 reST files, ~6 MB) from the cache."""
    folder = root()
    if not (folder / ".complete").exists():
        raise CorpusMissing(
            f"the django-docs corpus is not in {folder.parent} (EMBEDPORTAL_CORPUS_DIR): fetch it once with "
            "`manage.py fetch_corpus`, or pass --corpus with a folder of text files"
        )
    return sorted(folder.rglob("*.txt"))


def fetch() -> list[Path]:
    """Fill the cache from Django's source distribution (downloaded by pip unless already there)."""
    cache, folder = settings.EMBEDPORTAL_CORPUS_DIR, root()
    if not (folder / ".complete").exists():
        cache.mkdir(parents=True, exist_ok=True)
        sdist = cache / f"django-{DJANGO_VERSION}.tar.gz"
        if not sdist.exists():
            # `--no-binary django`, not `:all:`: the latter holds for the build requirements too (setuptools), which
            # an index of wheels only (the image build's) then cannot give.
            pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "django", "-q"]
            subprocess.run([*pip, f"django=={DJANGO_VERSION}", "-d", str(cache)], check=True)
        prefix = f"django-{DJANGO_VERSION}/docs/"
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.name.endswith(".txt")]
            for m in members:
                m.name = m.name[len(prefix) :]
            tar.extractall(folder, members=members, filter="data")
        (folder / ".complete").touch()
    return django_docs()
