"""Benchmark corpora, fetched at run time into a cache (their text is never committed)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

from django.conf import settings

DJANGO_VERSION = "5.2.19"


def django_docs(cache: Path | None = None) -> list[Path]:
    """The Django 5.2 documentation (656 reST files, ~6 MB) from Django's source distribution."""
    cache = cache or settings.DATA_DIR / "cache" / "corpus"
    root = cache / f"django-{DJANGO_VERSION}-docs"
    if not (root / ".complete").exists():
        cache.mkdir(parents=True, exist_ok=True)
        sdist = cache / f"django-{DJANGO_VERSION}.tar.gz"
        if not sdist.exists():
            pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q"]
            subprocess.run([*pip, f"django=={DJANGO_VERSION}", "-d", str(cache)], check=True)
        prefix = f"django-{DJANGO_VERSION}/docs/"
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.name.endswith(".txt")]
            for m in members:
                m.name = m.name[len(prefix) :]
            tar.extractall(root, members=members, filter="data")
        (root / ".complete").touch()
    return sorted(p for p in root.rglob("*.txt"))
