"""Reserved collections (`__ops_test_...`, a prefix producers cannot use): everything an operations
test writes lives in one, and this deletes them safely next to running workers."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from pipeline.backfill import BUILD_LOCK
from pipeline.choices import DocumentStatus
from pipeline.models import RESERVED_PREFIX, Collection, Document, reserved_names_allowed

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2


@contextmanager
def reserved_names() -> Iterator[None]:
    token = reserved_names_allowed.set(True)
    try:
        yield
    finally:
        reserved_names_allowed.reset(token)


def reserved_collections() -> Any:
    return Collection.objects.filter(name__startswith=RESERVED_PREFIX)


def delete_reserved(collection_id: int, timeout: float | None = None) -> bool:
    """Delete a reserved collection even while a worker finishes a batch of it or an index is built.

    A plain delete raced both: chunks a worker committed between our DELETEs, or a history row,
    broke the deferred foreign keys at commit (the collection stayed), and an HNSW build of its
    first load (pipeline.backfill), blocked behind our DELETE, created its index afterwards for a
    collection that no longer existed. So: pause it (no new claims), wait until no lease on it is
    live (the batch stored or given back, or its lease expired), then delete holding the
    backfill's build lock (no build runs meanwhile; one refused retries from an idle worker and
    finds nothing), retrying on a database error, up to `timeout` seconds (default: a lease
    and a bit). Returns False if it is still there (the next run's sweep tries again).
    """
    Collection.objects.filter(pk=collection_id).pause()
    timeout = settings.EMBEDPORTAL_LEASE_SECONDS + 15 if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while True:
        leased = Document.objects.filter(
            collection_id=collection_id, status=DocumentStatus.PROCESSING, lease_expires_at__gt=timezone.now()
        )
        if not leased.exists():
            try:
                with transaction.atomic(), connection.cursor() as cur:
                    cur.execute("SELECT pg_try_advisory_xact_lock(%s)", [BUILD_LOCK])
                    if cur.fetchone()[0]:
                        collection = Collection.objects.filter(pk=collection_id).first()
                        if collection is not None:
                            collection.delete()
                        return True
            except DatabaseError as exc:  # a concurrent write broke a foreign key: try again
                logger.info("deleting reserved collection %s: %s; retrying", collection_id, exc)
        if time.monotonic() >= deadline:
            logger.warning("reserved collection %s not deleted within %.0f s", collection_id, timeout)
            return False
        time.sleep(POLL_SECONDS)


def sweep_reserved() -> int:
    """Delete reserved collections left by a run that died or a clean-up that gave up (only while
    holding the run slot). Returns how many were deleted."""
    return sum(delete_reserved(pk) for pk in reserved_collections().values_list("pk", flat=True))


def user_backlog() -> int:
    """Claimable documents of user collections: the real queue."""
    return (
        Document.objects.filter(status=DocumentStatus.PENDING, collection__paused=False)
        .exclude(collection__name__startswith=RESERVED_PREFIX)
        .count()
    )
