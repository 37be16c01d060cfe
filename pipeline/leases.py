"""A batch's lease and heartbeat renewals (LeaseKeeper), the storage thread and a run's tally (Report)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import DatabaseError, close_old_connections, connection, transaction

from pipeline.models import Document, WorkerHeartbeat, process_name

logger = logging.getLogger(__name__)

# Seconds between a worker's heartbeat writes (EMBEDPORTAL_HEARTBEAT_MAX_AGE must be well above).
HEARTBEAT_EVERY = 15.0
# Milliseconds a lease renewal waits for a row lock before trying again at the next renewal.
RENEW_LOCK_TIMEOUT_MS = 2000


def first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def log_database_error(what: str, exc: BaseException, failures: int) -> None:
    """The first failure with its traceback, then one line per retry: an outage must not flood the log."""
    message = first_line(exc)
    if failures == 1:
        logger.error("%s: %s", what, message, exc_info=exc)
    else:
        logger.warning("%s: still failing (retry %d): %s", what, failures - 1, message)


def new_worker_id() -> str:
    # Starts with its process's heartbeat key: DocumentQuerySet.stranded matches leases to live processes by it.
    return f"{process_name()}:{uuid.uuid4().hex[:6]}"


class LeaseKeeper:
    """Renews a running batch's leases and its process's heartbeat every third of the lease, so leases
    can be short (a dead worker stops renewing); a database blip waits for the next renewal."""

    def __init__(self, worker: str, ids: list[int], lease: timedelta, role: str) -> None:
        self.worker, self.ids, self.lease, self.role = worker, ids, lease, role
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"lease-{worker}", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        self.thread.join()

    def _run(self) -> None:
        failures = 0
        try:
            while not self.done.wait(self.lease.total_seconds() / 3):
                try:
                    with transaction.atomic(), connection.cursor() as cur:
                        # Never block long on a row lock: stop() must not wait on a stuck statement.
                        cur.execute("SELECT set_config('lock_timeout', %s, true)", [str(RENEW_LOCK_TIMEOUT_MS)])
                        Document.objects.filter(pk__in=self.ids).renew(self.worker, self.lease)
                        WorkerHeartbeat.objects.beat(self.role)
                    failures = 0
                except DatabaseError as exc:
                    failures += 1
                    log_database_error(f"could not renew leases of worker {self.worker}", exc, failures)
                    connection.close_if_unusable_or_obsolete()
        finally:
            close_old_connections()
            connection.close()  # this thread's own connection


class StorageStage:
    """One thread (own connection) storing a batch while the next is embedded, in order; `barrier()`
    keeps at most one waiting and raises a job's error in the worker's thread."""

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="storage")
        self.pending: list[Future] = []

    def submit(self, job: Callable[[], None]) -> None:
        self.pending.append(self.executor.submit(job))

    def barrier(self) -> None:
        pending, self.pending = self.pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        try:
            self.barrier()
        finally:
            self.executor.submit(lambda: connection.close()).result()  # the storage thread's own connection
            self.executor.shutdown()


@dataclass
class Report:
    COUNTS = ("claimed", "embedded", "failed", "deferred", "chunks", "batches")

    claimed: int = 0
    embedded: int = 0
    failed: int = 0
    deferred: int = 0
    chunks: int = 0
    batches: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, other: Any) -> None:
        """Add another report, or a BatchResult (pipeline.recording) of this report's batch."""
        for name in self.COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name, 0))
        for stage, seconds in other.seconds.items():
            self.seconds[stage] += seconds
        for kind, n in other.errors.items():
            self.errors[kind] += n

    def as_dict(self) -> dict:
        return {
            **{name: getattr(self, name) for name in self.COUNTS},
            "seconds": {str(k): round(v, 4) for k, v in self.seconds.items()},
            "errors": {str(k): v for k, v in self.errors.items()},
        }
