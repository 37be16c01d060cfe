"""Upgrading a database of the last release (30 November 2026, commit fb44147) with this code's migrations:
`migrate` goes straight through, and the rows already there keep what they meant."""

from __future__ import annotations

import os
from datetime import timedelta
from subprocess import PIPE

import psycopg
import pytest
from django.db import connection
from django.utils import timezone
from psycopg.types.json import Jsonb

from tests.conftest import database_url, manage

pytestmark = pytest.mark.django_db(transaction=True)

# Each app's last migration in that release, as this code's squashes name them (each replaces exactly
# the release's migrations of its app, so a database of that release has every one of them applied).
RELEASE = {
    "pipeline": "0001_squashed_0012_provider_circuit_probe_permission",
    "reprocessing": "0001_squashed_0002_document_fk_on_delete_cascade",
    "testing": "0001_squashed_0002_benchmarkrun",
    "docs_site": "0001_initial",
}


def migrate(url: str, *args: str) -> str:
    proc = manage("migrate", *args, "--noinput", env={"DATABASE_URL": url}, stdout=PIPE, stderr=PIPE, text=True)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return out


def insert(cur: psycopg.Cursor, table: str, **values: object) -> int:
    """A row of the release's schema: `values`, and a plain value for every other required column."""
    cur.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s"
        " AND is_nullable = 'NO' AND column_default IS NULL AND column_name <> 'id'",
        [table],
    )
    plain = {"boolean": False, "jsonb": Jsonb({}), "interval": timedelta(hours=1), "ARRAY": []}
    plain |= dict.fromkeys(("integer", "bigint", "smallint", "double precision"), 1)
    plain |= dict.fromkeys(("timestamp with time zone", "date"), timezone.now())
    row = {column: plain.get(kind, "x") for column, kind in cur.fetchall()} | values
    cur.execute(
        f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))}) RETURNING id",
        list(row.values()),
    )
    return cur.fetchone()[0]


def test_a_database_of_the_last_release_upgrades_and_its_rows_keep_their_meaning():
    """Two squashes of this round broke the upgrade: reprocessing's took in 0003, written after the release,
    so `migrate` stopped every database of that release part-way through it (embedportal.E001, with no
    release to get past it with); pipeline's folded each "add with the old default, then change the
    default" pair into one AddField of the new default, so upgraded collections embedded with context
    and searched hybrid without a re-embed, and the release's batches were rolled into the history twice."""
    name = f"upgrade_{os.getpid()}"
    with connection.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"CREATE DATABASE {name}")
    url = database_url().replace(f"/{connection.settings_dict['NAME']}", f"/{name}", 1)
    try:
        for app, last in RELEASE.items():
            migrate(url, app, last)
        with psycopg.connect(url) as conn, conn.cursor() as cur:
            settings = {"model": "local/hash-16", "dimensions": 16, "hnsw_m": 16, "hnsw_ef_construction": 64}
            chunking = {"chunking_strategy": "recursive", "chunk_unit": "characters", "chunk_size": 300}
            collection = insert(cur, "pipeline_collection", name="docs", chunk_overlap=0, **settings, **chunking)
            document = insert(cur, "pipeline_document", collection_id=collection, external_id="a.md", status="failed")
            insert(cur, "pipeline_batchtiming", collection_id=collection)
            due = timezone.now() + timedelta(minutes=5)
            failure = {"state": "waiting", "next_retry_at": due, "error_type": "timeout"}
            insert(cur, "failed_documents", document_id=document, **failure)

        migrate(url)  # the whole upgrade, as the migrate Job runs it

        with psycopg.connect(url) as conn:
            assert conn.execute(
                "SELECT contextual_chunks, search_mode, fusion FROM pipeline_collection WHERE id = %s", [collection]
            ).fetchone() == (False, "vector", "blend"), "an existing collection changed how it embeds or searches"
            assert conn.execute("SELECT rolled_up FROM pipeline_batchtiming").fetchall() == [(True,)]
            assert conn.execute("SELECT state, next_retry_at FROM failed_documents").fetchall() == [("open", due)]
        assert "No migrations to apply" in migrate(url)
    finally:
        with connection.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
