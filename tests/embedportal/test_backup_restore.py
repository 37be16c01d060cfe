"""The restore drill for the embedded database: back up, destroy, restore, and the documents and
chunks are the same rows (counts and a checksum of ids, content hashes and vectors)."""

from __future__ import annotations

import subprocess
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit.models import AuditEvent
from embedportal.management.commands.backup import run_pg_tool
from pipeline.models import Chunk, Document
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue

# Committed data: pg_restore runs in its own connection and must see (and replace) it.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_other_clients():
    """Restore refuses while another client is connected: let the servers earlier tests started
    (gunicorn workers, Prometheus' scrape targets) finish closing their connections first."""
    from embedportal.management.commands.restore import other_connections
    from tests.conftest import wait_for

    wait_for(lambda: not other_connections(), timeout=30)


def fingerprint() -> tuple[int, int, str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM pipeline_document), (SELECT count(*) FROM pipeline_chunk),"
            " (SELECT md5(string_agg(id || ':' || content_hash || ':' || status, ',' ORDER BY id))"
            "    FROM pipeline_document),"
            " (SELECT md5(string_agg(id || ':' || document_id || ':' || embedding::text, ',' ORDER BY id))"
            "    FROM pipeline_chunk)"
        )
        return cursor.fetchone()


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_backup_destroy_restore_gives_back_the_same_documents_and_chunks(hash_collection, tmp_path: Path):
    enqueue(hash_collection, [IncomingDocument(f"doc-{i}", f"Paragraph {i}. " * 60) for i in range(20)])
    assert EmbeddingIngestionPipeline().drain().embedded == 20
    before = fingerprint()
    assert before[0] == 20 and before[1] > 20

    archive = tmp_path / "drill.dump"
    said = run("backup", "--output", str(archive))
    assert str(archive) in said and "MiB" in said and said.rstrip().endswith(" s")

    Chunk.objects.all().delete()
    Document.objects.filter(external_id__in=["doc-1", "doc-2"]).delete()
    enqueue(hash_collection, [IncomingDocument("after-the-backup", "written after the backup")])
    assert fingerprint() != before

    said = run("restore", str(archive))
    assert said.startswith(f"Restored {archive}")
    assert fingerprint() == before
    assert not Document.objects.filter(external_id="after-the-backup").exists()
    # The backup's event was written after its dump; the restore's goes into the restored database.
    assert list(AuditEvent.objects.values_list("action", "target")) == [("restore", str(archive))]


def test_restoring_an_archive_from_before_the_audit_trail_says_it_went_unrecorded(tmp_path: Path):
    archive = tmp_path / "old.dump"
    assert (
        run_pg_tool("pg_dump", "--format=custom", "--exclude-table=audit_auditevent", "--file", str(archive)).returncode
        == 0
    )
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE audit_auditevent")
    try:
        err = StringIO()
        call_command("restore", str(archive), stdout=StringIO(), stderr=err)
        assert "no audit table yet" in err.getvalue()
    finally:
        call_command("migrate", "audit", "zero", fake=True, verbosity=0)
        call_command("migrate", "audit", verbosity=0)
    assert not AuditEvent.objects.exists()


def test_backup_refuses_to_overwrite_and_restore_refuses_what_is_no_archive(tmp_path: Path):
    existing = tmp_path / "existing.dump"
    existing.write_text("an earlier backup")
    with pytest.raises(CommandError, match="exists"):
        run("backup", "--output", str(existing))
    with pytest.raises(CommandError, match="no such file"):
        run("restore", str(tmp_path / "missing.dump"))
    # They were "no such file" too, which they are not.
    for path in ("/dev/zero", str(tmp_path)):
        with pytest.raises(CommandError, match=f"^{path}: not a regular file .a folder, a device or a FIFO.; name"):
            run("restore", path)
    with pytest.raises(CommandError, match="is not a pg_dump archive"):
        run("restore", str(existing))
    assert existing.read_text() == "an earlier backup"


def test_backup_output_into_a_folder_not_made_yet_makes_it(tmp_path: Path):
    """The emergencies runbook's `backup --output var/backups/before-restore.dump`: var/backups/ exists
    only after a default backup, and the command refused "var/backups is not a directory"."""
    archive = tmp_path / "var" / "backups" / "before-restore.dump"
    assert run("backup", "--output", str(archive)).startswith("Backed up database")
    assert archive.stat().st_size > 0
    (tmp_path / "a-file").write_text("")
    with pytest.raises(CommandError, match="cannot make the folder .*a-file/sub: Not a directory"):
        run("backup", "--output", str(tmp_path / "a-file" / "sub" / "b.dump"))


def test_restore_refuses_while_another_client_uses_the_database(tmp_path: Path):
    import psycopg

    from tests.conftest import database_url

    archive = tmp_path / "b.dump"
    run("backup", "--output", str(archive))
    assert run("restore", "--dry-run", str(archive)).startswith(f"Would restore {archive}")
    with psycopg.connect(database_url(), application_name="embedportal-worker"):
        with pytest.raises(CommandError, match=r"in use by 1 other connection\(s\): embedportal-worker \(\d+\)"):
            run("restore", str(archive))


def test_backup_follows_a_database_url_that_names_its_socket_as_a_host_parameter(hash_collection, tmp_path: Path):
    from tests.conftest import database_url, manage

    url = database_url()
    assert "?host=/" in url  # the embedded server's socket, as a user's DATABASE_URL may name it
    archive = tmp_path / "socket.dump"
    # No XDG_RUNTIME_DIR, as in a container: platformdirs' warning about it is not the user's business.
    env = {"DATABASE_URL": url, "XDG_RUNTIME_DIR": ""}
    backup = manage("backup", "--output", str(archive), env=env, stderr=subprocess.PIPE, text=True)
    assert backup.wait(timeout=120) == 0
    assert backup.stderr.read() == ""
    listing = run_pg_tool("pg_restore", "--list", str(archive))
    assert "TABLE DATA public pipeline_collection" in listing.stdout
