"""The squashed migration (0001-0003): the database itself cascades a document's delete to its
failures (the key Django cannot declare, added by hand), also after unapplying and applying it again."""

from __future__ import annotations

from tests.reprocessing.conftest import query, run, setup_documents

ROWS = (
    "SELECT d.external_id, f.state, f.next_retry_at IS NULL"
    " FROM failed_documents f JOIN pipeline_document d ON d.id = f.document_id ORDER BY 1"
)


def test_the_squashed_migration_reapplies_and_the_database_cascades_document_deletes(scratch_db):
    setup_documents(scratch_db, "http://127.0.0.1:9", ["scheduled", "given up", "deleted"])
    run(scratch_db, "migrate", "reprocessing", "zero", "-v", "0")
    run(scratch_db, "migrate", "reprocessing", "-v", "0")
    query(
        scratch_db,
        "INSERT INTO failed_documents (document_id, error_type, stage, message, attempts, first_failed_at,"
        " last_failed_at, next_retry_at, state, resolution)"
        " SELECT id, 'api_error', 'embedding', '', 1, now(), now(), CASE external_id WHEN 'd0' THEN now() END,"
        " CASE external_id WHEN 'd1' THEN 'dead_lettered' ELSE 'open' END, ''"
        " FROM pipeline_document RETURNING id",
    )
    # A raw DELETE, as Collection.delete() issues: no Django cascade runs.
    query(scratch_db, "DELETE FROM pipeline_document WHERE external_id = 'd2' RETURNING id")
    assert query(scratch_db, ROWS) == [("d0", "open", False), ("d1", "dead_lettered", True)]
    assert query(scratch_db, "SELECT count(*) FROM failed_documents") == [(2,)]
