"""When repository files last changed: from Git when the repository is there, else from the
manifest `manage.py docs build` writes next to the built site (a container has no .git)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from django.conf import settings

MANIFEST = "_manifest.json"
SKIP_DIRS = (".", "var/", "node_modules/", "site/")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class History:
    def __init__(self, root: Path | None = None, manifest: Path | None = None) -> None:
        self.root = (root or settings.BASE_DIR).resolve()
        self.commits: dict[str, tuple[str, float]] = {}
        self.dirty: set[str] = set()
        self.git = self._load_git()
        self.manifest: dict[str, Any] = {}
        manifest = manifest or Path(settings.EMBEDPORTAL_DOCS_SITE_DIR) / MANIFEST
        if not self.git and manifest.is_file():
            self.manifest = json.loads(manifest.read_text(encoding="utf-8"))
        self._shown: dict[tuple[str, str], str | None] = {}

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        git = ["git", "--no-optional-locks", "-C", str(self.root)]
        return subprocess.run([*git, *args], capture_output=True, text=True, timeout=60)

    def _load_git(self) -> bool:
        try:
            log = self._run("log", "--format=%x1e%H %ct", "--name-only", "--no-renames", "HEAD")
        except OSError:  # no git binary
            return False
        if log.returncode:
            return False
        for record in log.stdout.split("\x1e")[1:]:
            lines = [line for line in record.splitlines() if line.strip()]
            sha, ct = lines[0].split()
            for path in lines[1:]:
                # git log is newest first: the first commit seen for a path is its last change.
                self.commits.setdefault(path, (sha, float(ct)))
        status = self._run("status", "--porcelain", "-uall", "--no-renames")
        self.dirty = {line[3:].strip().strip('"') for line in status.stdout.splitlines()}
        return True

    def expand(self, pattern: str) -> list[str]:
        """Repository paths matching a glob (a plain path matches itself if it exists)."""
        matches = sorted(p.relative_to(self.root).as_posix() for p in self.root.glob(pattern) if p.is_file())
        return [m for m in matches if not m.startswith(SKIP_DIRS)]

    def changed_at(self, path: str) -> float | None:
        """Unix time of the file's last change (an uncommitted edit counts as its file time)."""
        if path in self.commits and path not in self.dirty:
            return self.commits[path][1]
        recorded = self.manifest.get("files", {}).get(path)  # without Git: as of the build, if unchanged since
        file = self.root / path
        if recorded and file.exists() and sha256_file(file) == recorded["sha256"]:
            return recorded["changed_at"]
        return file.stat().st_mtime if file.exists() else None

    def last_commit(self, path: str) -> str | None:
        """The commit that last changed the file; None while it has uncommitted edits, or without Git."""
        return self.commits[path][0] if path in self.commits and path not in self.dirty else None

    def text_at(self, commit: str | None, path: str) -> str | None:
        """The file as it was at a commit, or is now (commit None); None: it did not exist then."""
        if commit is None:
            file = self.root / path
            return file.read_text(encoding="utf-8") if file.exists() else None
        key = (commit, path)
        if key not in self._shown:
            shown = self._run("show", f"{commit}:{path}")
            self._shown[key] = shown.stdout if shown.returncode == 0 else None
        return self._shown[key]
