"""`manage.py restore ARCHIVE`: replace the database's contents with a `manage.py backup` archive."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import ProgrammingError, connection

from audit import trail
from embedportal.management.commands.backup import run_pg_tool, size_text


def other_connections() -> list[str]:
    """Who else is connected to the database (web, workers, a psql), as `application (pid)`."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(nullif(application_name, ''), 'client') || ' (' || pid || ')' FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() ORDER BY pid"
        )
        return [row[0] for row in cursor.fetchall()]


class Command(BaseCommand):
    help = (
        "Restore the database from a `manage.py backup` archive: every table is dropped and recreated "
        "from it, in one transaction. Stop web and workers first."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("archive", type=Path, help="A file written by `manage.py backup`.")
        parser.add_argument("--dry-run", action="store_true", help="Check the archive and the database only.")

    def handle(self, *args: Any, archive: Path, dry_run: bool, **o: Any) -> None:
        if not archive.is_file():
            what = "not a regular file (a folder, a device or a FIFO)" if archive.exists() else "no such file"
            raise CommandError(f"{archive}: {what}; name an archive `manage.py backup` wrote")
        listing = run_pg_tool("pg_restore", "--list", str(archive))
        if listing.returncode != 0:
            raise CommandError(f"{archive} is not a pg_dump archive: {listing.stderr.strip()}")
        if others := other_connections():
            raise CommandError(
                f"the database is in use by {len(others)} other connection(s): {', '.join(others)}; "
                "stop the web server and the workers first"
            )
        name = connection.settings_dict["NAME"]
        if dry_run:
            self.stdout.write(f"Would restore {archive} ({size_text(archive)}) into database {name}")
            return
        started = time.monotonic()
        result = run_pg_tool("pg_restore", "--clean", "--if-exists", "--single-transaction", "--no-owner", str(archive))
        if result.returncode != 0:
            raise CommandError(f"pg_restore failed, nothing changed: {result.stderr.strip()}")
        try:
            trail.command(self, target=str(archive))
        except ProgrammingError:  # an archive from before the audit trail: `migrate` creates its table
            self.stderr.write("not recorded in the audit trail: the restored database has no audit table yet")
        self.stdout.write(
            f"Restored {archive} ({size_text(archive)}) into database {name} in {time.monotonic() - started:.1f} s"
        )
