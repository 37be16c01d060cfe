"""Reserved collections (`__ops_test_...`), where operations tests write, and deleting them next to workers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from pipeline.backfill import BUILD_LOCK
from pipeline.choices import DocumentStatus
from pipeline.models import RESERVED_PREFIX, Collection, Document

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2


def wait_until(predicate: Callable[[], bool], seconds: float) -> bool:
    """Poll `predicate` until it holds (True) or `seconds` have passed (False)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True


def reserved_collections() -> Any:
    return Collection.objects.filter(name__startswith=RESERVED_PREFIX)


def delete_reserved(collection_id: int, timeout: float | None = None) -> bool:
    """Delete it next to workers and index builds within `timeout` s (a lease and a bit); False if it is still there."""
    Collection.objects.filter(pk=collection_id).pause()
    timeout = settings.EMBEDPORTAL_LEASE_SECONDS + 15 if timeout is None else timeout

    def deleted() -> bool:
        leased = Document.objects.filter(
            collection_id=collection_id, status=DocumentStatus.PROCESSING, lease_expires_at__gt=timezone.now()
        )
        if leased.exists():
            return False
        try:
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute("SELECT pg_try_advisory_xact_lock(%s)", [BUILD_LOCK])
                if not cur.fetchone()[0]:
                    return False
                collection = Collection.objects.filter(pk=collection_id).first()
                if collection is not None:
                    collection.delete()
                return True
        except DatabaseError as exc:  # a concurrent write broke a foreign key: try again
            logger.info("deleting reserved collection %s: %s; retrying", collection_id, exc)
            return False

    if wait_until(deleted, timeout):
        return True
    logger.warning("reserved collection %s not deleted within %.0f s", collection_id, timeout)
    return False


def sweep_reserved() -> int:
    """Delete the reserved collections a dead run or a failed clean-up left (holding the run slot); how many."""
    return sum(delete_reserved(pk) for pk in reserved_collections().values_list("pk", flat=True))
