"""Health checks that prove the pipeline can make progress, not only that a process is up.

Three checks, each with a pass/fail reason and its duration:

- `model`: every active (unpaused) collection's model embeds a probe text in time, with the
  right dimension and finite values;
- `pgvector`: a vector row can be written to the chunk table (then rolled back);
- `queue`: a worker heartbeat is fresh, and pending work is not sitting there with nothing
  embedded for longer than the progress window.

`liveness()` touches nothing outside the process; `readiness()` proves the database.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from pipeline.embedding import PipelineError, api_key, embed_raw, scrub
from pipeline.models import Collection, Document, WorkerHeartbeat

PROBE_TEXT = "embedportal health probe"
# Database work in a check is bounded: a locked table must fail the check, not hang the probe.
CHECK_STATEMENT_TIMEOUT_MS = 5000


@dataclass
class CheckResult:
    name: str
    ok: bool
    reason: str
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 4)}


class CheckFailed(Exception):
    """Raised inside a check with the reason an operator should read."""


def _timed(name: str, check: Callable[[dict[str, Any]], str]) -> CheckResult:
    details: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        reason = check(details)
        ok = True
    except CheckFailed as exc:
        reason, ok = str(exc), False
    except DatabaseError as exc:
        reason, ok = f"database error: {type(exc).__name__}: {exc}".strip(), False
    return CheckResult(name, ok, reason, time.perf_counter() - started, details)


def _statement_timeout(cursor: Any) -> None:
    cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(CHECK_STATEMENT_TIMEOUT_MS)])


# -- the embedding model answers ------------------------------------------------------------


def _probe_model(collection: Collection, timeout: float) -> None:
    probe = copy.copy(collection)
    # extra_params are passed to litellm.embedding last, so this bounds the probe only.
    probe.extra_params = {**(collection.extra_params or {}), "timeout": timeout}
    started = time.perf_counter()
    try:
        vectors = embed_raw(probe, [PROBE_TEXT])
    except PipelineError as exc:
        raise CheckFailed(f"{collection.model} (collection {collection.name}) failed: {exc}") from None
    elapsed = time.perf_counter() - started
    if elapsed > timeout:
        raise CheckFailed(f"{collection.model} answered in {elapsed:.1f} s, over the {timeout:g} s timeout")
    if len(vectors) != 1 or len(vectors[0]) != collection.dimensions:
        got = len(vectors[0]) if vectors else 0
        raise CheckFailed(
            f"{collection.model} returned {got} dimensions, collection {collection.name} expects "
            f"{collection.dimensions}"
        )
    values = [float(v) for v in vectors[0]]
    if not all(v == v and abs(v) != float("inf") for v in values):
        raise CheckFailed(f"{collection.model} returned NaN or infinite values")
    if not any(values):
        raise CheckFailed(f"{collection.model} returned an all-zero vector")


def check_model(timeout: float | None = None) -> CheckResult:
    timeout = timeout or settings.EMBEDPORTAL_HEALTH_MODEL_TIMEOUT

    def run(details: dict[str, Any]) -> str:
        # One probe per distinct model configuration: collections sharing a model share its health.
        seen: dict[tuple, str] = {}
        for collection in Collection.objects.filter(paused=False).order_by("name"):
            key = (
                collection.model,
                collection.api_base,
                collection.api_key_env,
                collection.dimensions,
                repr(sorted((collection.extra_params or {}).items())),
            )
            if key in seen:
                continue
            seen[key] = collection.name
            try:
                _probe_model(collection, timeout)
            except CheckFailed as exc:
                # A provider may echo the key in its error text; never let it reach a probe's output.
                raise CheckFailed(scrub(str(exc), api_key(collection))) from None
        details["models"] = sorted({key[0] for key in seen})
        if not seen:
            return "no active collections: nothing to embed with"
        return f"{len(seen)} model configuration(s) answered: {', '.join(details['models'])}"

    return _timed("model", run)


# -- pgvector is writable -------------------------------------------------------------------


class _Rollback(Exception):
    pass


def check_pgvector(using: str = "default") -> CheckResult:
    def run(details: dict[str, Any]) -> str:
        from django.db import connections

        conn = connections[using]
        try:
            with transaction.atomic(using=using), conn.cursor() as cur:
                _statement_timeout(cur)
                cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
                row = cur.fetchone()
                if row is None:
                    raise CheckFailed("the vector extension is not installed")
                details["pgvector"] = row[0]
                # The document and collection ids do not exist: the foreign keys are deferred to
                # commit, and this transaction never commits, so the probe row is never visible.
                # (Explicitly deferred: an enclosing transaction may have made them immediate;
                # the rollback restores its setting.)
                cur.execute("SET CONSTRAINTS ALL DEFERRED")
                cur.execute(
                    "INSERT INTO pipeline_chunk (document_id, collection_id, ordinal, text, token_count, embedding)"
                    " VALUES (-1, -1, 0, %s, 0, '[1,2,3]'::vector) RETURNING embedding::text",
                    [PROBE_TEXT],
                )
                if cur.fetchone()[0] != "[1,2,3]":
                    raise CheckFailed("a vector did not read back as written")
                raise _Rollback
        except _Rollback:
            pass
        except DatabaseError as exc:
            cause = exc.__cause__ or exc
            raise CheckFailed(f"cannot write a vector row: {type(cause).__name__}: {cause}".strip()) from None
        return f"wrote and rolled back a vector row (pgvector {details['pgvector']})"

    return _timed("pgvector", run)


# -- the queue is being drained --------------------------------------------------------------


def check_queue() -> CheckResult:
    def run(details: dict[str, Any]) -> str:
        now = timezone.now()
        max_age = timedelta(seconds=settings.EMBEDPORTAL_HEARTBEAT_MAX_AGE)
        window = timedelta(seconds=settings.EMBEDPORTAL_HEALTH_PROGRESS_WINDOW)
        with transaction.atomic(), connection.cursor() as cur:
            _statement_timeout(cur)
            latest = WorkerHeartbeat.objects.order_by("-beat_at").values_list("beat_at", flat=True).first()
            alive = WorkerHeartbeat.objects.fresh(max_age).count()
            # Claimable work only: paused collections and documents in backoff are waiting on purpose.
            oldest = Document.objects.filter(collection__paused=False).oldest_due_at(now)
            last_embedded = (
                Document.objects.filter(last_embedded_at__isnull=False)
                .order_by("-last_embedded_at")
                .values_list("last_embedded_at", flat=True)
                .first()
            )
        details.update(
            workers_alive=alive,
            last_heartbeat=latest.isoformat() if latest else None,
            oldest_pending_seconds=round((now - oldest).total_seconds(), 1) if oldest else 0,
            last_embedded=last_embedded.isoformat() if last_embedded else None,
        )
        if not alive:
            seen = f"last one {(now - latest).total_seconds():.0f} s ago" if latest else "none ever"
            raise CheckFailed(f"no worker heartbeat in the last {max_age.total_seconds():.0f} s ({seen})")
        if oldest is None:
            return f"{alive} worker(s) alive; no pending work"
        waited = now - oldest
        if waited > window and (last_embedded is None or now - last_embedded > window):
            raise CheckFailed(
                f"work has waited {waited.total_seconds():.0f} s and nothing was embedded in the last "
                f"{window.total_seconds():.0f} s"
            )
        return f"{alive} worker(s) alive; oldest pending work waited {waited.total_seconds():.0f} s"

    return _timed("queue", run)


CHECKS: dict[str, Callable[[], CheckResult]] = {"model": check_model, "pgvector": check_pgvector, "queue": check_queue}


def run_checks(names: list[str] | None = None) -> list[CheckResult]:
    return [CHECKS[name]() for name in (names or list(CHECKS))]


def report(results: list[CheckResult]) -> dict[str, Any]:
    return {"healthy": all(r.ok for r in results), "checks": [r.as_dict() for r in results]}


# -- probes ----------------------------------------------------------------------------------

_migrated = False


def readiness() -> CheckResult:
    """The database answers, every migration is applied, and pgvector is installed."""

    def run(details: dict[str, Any]) -> str:
        global _migrated
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = cur.fetchone()
        if row is None:
            raise CheckFailed("the vector extension is not installed")
        # Loading the migration graph costs tens of ms: once applied, a process need not ask again.
        if not _migrated:
            executor = MigrationExecutor(connection)
            plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
            if plan:
                raise CheckFailed(f"{len(plan)} migration(s) not applied, first {plan[0][0]}")
            _migrated = True
        return f"database reachable, migrations applied, pgvector {row[0]}"

    return _timed("ready", run)


def liveness() -> CheckResult:
    """The process serves requests; deliberately no database, so an outage restarts nothing."""
    return CheckResult("live", True, "process is serving requests")
