"""The scratch database: benchmarks and capacity measurements write their documents, chunks and
batches (and VACUUM) into `<database>_scratch` on the same server, never into production; only
their result is stored in production. docs/benchmarks.md, "The scratch database"."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
from django.conf import settings
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections
from psycopg import sql

# pg_try_advisory_lock key (on the production database): one user of the scratch database at a time.
LOCK = 0x5343524154434821


class ScratchUnavailable(Exception):
    """Another benchmark or capacity measurement uses the scratch database, or it cannot be created."""


def name() -> str:
    return settings.EMBEDPORTAL_SCRATCH_DATABASE or f"{connection.settings_dict['NAME']}_scratch"[:63]


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """Point the default connection at the scratch database, created if missing, migrated and
    emptied, for the block; every connection opened meanwhile (forked workers, extra writers) goes
    there too. Emptied again and pointed back at production after it."""
    default = connections[DEFAULT_DB_ALIAS]
    if default.in_atomic_block:
        raise RuntimeError("the scratch database cannot be entered inside a transaction on production")
    default.ensure_connection()  # the embedded server fills in its socket on the first connection
    production = dict(default.settings_dict)
    scratch = name()
    if scratch == production["NAME"]:
        raise ScratchUnavailable(
            f"EMBEDPORTAL_SCRATCH_DATABASE names the production database {scratch}: it would be emptied"
        )
    guard = type(default)(dict(production), "scratch-guard")
    try:
        with guard.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", [LOCK])
            if not cur.fetchone()[0]:
                raise ScratchUnavailable(f"another benchmark or capacity measurement is using {scratch}")
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [scratch])
            if cur.fetchone() is None:
                _create(cur, scratch, production["USER"])
        default.close()
        default.settings_dict["NAME"] = scratch
        try:
            call_command("migrate", interactive=False, verbosity=0)
            call_command("flush", interactive=False, verbosity=0)  # a killed run's rows
            yield scratch
            call_command("flush", interactive=False, verbosity=0)
        finally:
            connections.close_all()
            default.settings_dict["NAME"] = production["NAME"]
    finally:
        guard.close()  # releases the lock


def _create(cur: object, scratch: str, user: str) -> None:
    try:
        cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
    except DatabaseError as exc:
        if isinstance(exc.__cause__, psycopg.errors.DuplicateDatabase):
            return  # created by another process first
        if not isinstance(exc.__cause__, psycopg.errors.InsufficientPrivilege):
            raise
        raise ScratchUnavailable(
            f"the scratch database {scratch} does not exist and {user} may not create it: create it once as a "
            f"superuser (CREATE DATABASE {scratch} OWNER {user}; then CREATE EXTENSION vector in it), or set "
            "EMBEDPORTAL_SCRATCH_DATABASE to one that exists"
        ) from None
