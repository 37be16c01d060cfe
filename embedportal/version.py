"""The code version a process runs: EMBEDPORTAL_CODE_VERSION, else git HEAD of a checkout, else the
`code-version` file the image build writes (deploy/Dockerfile), else "unknown"."""

from __future__ import annotations

import contextlib
import functools
import subprocess

from django.conf import settings

VERSION_FILE = "code-version"


@functools.cache
def code_version() -> str:
    if settings.EMBEDPORTAL_CODE_VERSION:
        return settings.EMBEDPORTAL_CODE_VERSION[:64]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "-C", str(settings.BASE_DIR), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()[:64]
    baked = settings.BASE_DIR / VERSION_FILE
    return (baked.read_text().strip()[:64] or "unknown") if baked.is_file() else "unknown"
