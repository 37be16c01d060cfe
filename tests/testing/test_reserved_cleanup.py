"""Reserved collections are deleted even while a worker still holds leases on them or an index
build runs (the backfill's build lock held elsewhere), and the run's opening sweep removes
what an earlier run left. Real PostgreSQL, a second connection on another thread."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections

from pipeline.backfill import BUILD_LOCK
from pipeline.choices import DocumentStatus
from pipeline.collections import create_collection
from pipeline.models import Collection, Document, reserved_names
from pipeline.queue import IncomingDocument, enqueue
from testing.reserved import delete_reserved, sweep_reserved
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def reserved(name: str = "__ops_test_9_1_batch") -> Collection:
    with reserved_names():
        collection = create_collection(name=name, model="local/hash-16", chunk_unit="characters")
    enqueue(collection, [IncomingDocument(f"d{i}", f"text {i}") for i in range(3)])
    return collection


class Deleter(threading.Thread):
    def __init__(self, pk: int, timeout: float) -> None:
        super().__init__(daemon=True)
        self.pk, self.timeout, self.result = pk, timeout, None

    def run(self) -> None:
        try:
            self.result = delete_reserved(self.pk, timeout=self.timeout)
        finally:
            connection.close()


def test_delete_waits_for_a_workers_live_leases_then_succeeds():
    collection = reserved()
    claimed = Document.objects.claim("worker-x", 10, timedelta(seconds=60))
    assert len(claimed) == 3

    deleter = Deleter(collection.pk, timeout=30)
    deleter.start()
    wait_for(lambda: Collection.objects.get(pk=collection.pk).paused)  # no new claims meanwhile
    assert deleter.is_alive() and Document.objects.filter(collection=collection).count() == 3

    # The worker's batch ends (stored): its leases are gone.
    Document.objects.filter(collection=collection).update(
        status=DocumentStatus.EMBEDDED, lease_owner="", lease_expires_at=None
    )
    deleter.join(30)
    assert deleter.result is True
    assert not Collection.objects.filter(pk=collection.pk).exists()
    assert not Document.objects.filter(collection_id=collection.pk).exists()


def test_delete_waits_for_an_index_build_and_gives_up_without_harm_when_it_does_not_end():
    collection = reserved()
    builder = connections.create_connection("default")
    try:
        with builder.cursor() as cur:  # another session "builds an index": it holds the build lock
            cur.execute("BEGIN")
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [BUILD_LOCK])
            assert delete_reserved(collection.pk, timeout=1) is False
            assert Collection.objects.filter(pk=collection.pk, paused=True).exists()

            deleter = Deleter(collection.pk, timeout=30)
            deleter.start()
            cur.execute("COMMIT")  # the build ends
        deleter.join(30)
        assert deleter.result is True
        assert not Collection.objects.filter(pk=collection.pk).exists()
    finally:
        builder.close()


def test_the_sweep_removes_leftovers_whose_leases_expired_and_leaves_user_collections():
    left = reserved("__ops_test_1_1_left")
    Document.objects.claim("dead-worker", 10, timedelta(seconds=60))
    Document.objects.filter(collection=left).update(lease_expires_at=Document.objects.first().enqueued_at)
    user = create_collection(name="user-docs", model="local/hash-16", chunk_unit="characters")
    enqueue(user, [IncomingDocument("u", "user text")])

    assert sweep_reserved() == 1

    assert list(Collection.objects.values_list("name", flat=True)) == ["user-docs"]
    assert not Collection.objects.get(pk=user.pk).paused and Document.objects.filter(collection=user).count() == 1
