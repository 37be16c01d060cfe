"""Migration 0003 folds the waiting and retrying failure states into open, and unfolds them back."""

from __future__ import annotations

from tests.reprocessing.conftest import query, run, setup_documents

ROWS = (
    "SELECT d.external_id, f.state, f.next_retry_at IS NULL"
    " FROM failed_documents f JOIN pipeline_document d ON d.id = f.document_id ORDER BY 1"
)


def test_waiting_and_retrying_failures_become_open_and_back(scratch_db):
    setup_documents(scratch_db, "http://127.0.0.1:9", ["scheduled", "requeued", "given up"])
    run(scratch_db, "migrate", "reprocessing", "0002", "-v", "0")
    query(
        scratch_db,
        "INSERT INTO failed_documents (document_id, error_type, stage, message, attempts, first_failed_at,"
        " last_failed_at, next_retry_at, state, resolution)"
        " SELECT id, 'api_error', 'embedding', '', 1, now(), now(), CASE external_id WHEN 'd0' THEN now() END,"
        " CASE external_id WHEN 'd0' THEN 'waiting' WHEN 'd1' THEN 'retrying' ELSE 'dead_lettered' END, ''"
        " FROM pipeline_document RETURNING id",
    )
    run(scratch_db, "migrate", "reprocessing", "-v", "0")
    assert query(scratch_db, ROWS) == [("d0", "open", False), ("d1", "open", True), ("d2", "dead_lettered", True)]
    run(scratch_db, "migrate", "reprocessing", "0002", "-v", "0")
    assert query(scratch_db, ROWS) == [
        ("d0", "waiting", False),
        ("d1", "retrying", True),
        ("d2", "dead_lettered", True),
    ]
