"""Health checks that prove the pipeline can make progress, not only that a process is up: `model`
(every active model configuration embeds a probe), `pgvector` (a vector row can be written, then
rolled back) and `queue` (a fresh heartbeat, pending work not stuck); liveness and readiness probes."""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count, Max, Min
from django.utils import timezone

from embedportal.collectors import bounded_queries
from embedportal.printable import printable
from embedportal.version import code_version
from pipeline import circuits, encoder, metrics, providers
from pipeline.choices import DocumentStatus
from pipeline.embedding import PROBE_TEXT, PipelineError, api_key, embed_texts, provider_of, scrub
from pipeline.models import Collection, Document, ModelCheck, ProviderCircuit, WorkerHeartbeat, sees_all_collections

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
    seconds = time.perf_counter() - started
    metrics.HEALTH_CHECK_LATENCY.labels(check=name).observe(seconds)
    # A reason quotes model strings and providers' errors: check_health prints it in a terminal.
    return CheckResult(name, ok, printable(reason), seconds, details)


def _pgvector_version(cursor: Any) -> str:
    cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    if (row := cursor.fetchone()) is None:
        raise CheckFailed("the vector extension is not installed")
    return row[0]


# pg_advisory_xact_lock key: one process refreshes the model probes at a time; the others wait
# for its results instead of calling the providers too.
MODEL_CHECK_LOCK = 0x656D6264_6D6F646C  # "embdmodl"


def _probe_model(collection: Collection, timeout: float) -> dict[str, Any]:
    """A probe's ModelCheck fields: loading LiteLLM or a local model's weights is timed apart
    (load_seconds), so a fresh process's first probe does not report a slow model. An endpoint whose
    circuit is open is not called: its probe would wait out the timeout, under the lock every health
    caller queues on, to learn what the circuit already says."""
    circuit = None if provider_of(collection.model) == "local" else ProviderCircuit.objects.endpoint(collection).first()
    if circuit is not None and circuit.waiting:
        reason = f"{collection.model} (collection {collection.name}) not probed: its provider circuit is open"
        return {"ok": False, "reason": reason, "seconds": 0.0, "load_seconds": 0.0}
    load_seconds = providers.load(collection.model)
    probe = copy.copy(collection)
    # extra_params are passed to litellm.embedding last, so this bounds the probe only.
    probe.extra_params = {**(collection.extra_params or {}), "timeout": timeout}
    started = time.perf_counter()
    failure = None
    try:
        # The workers' own quality gate: one vector of the collection's dimensions, finite, not all zero.
        embed_texts(probe, [PROBE_TEXT])
    except PipelineError as exc:
        # A provider may echo the key in its error text; never let it reach a probe's output.
        failure = scrub(f"{collection.model} (collection {collection.name}) failed: {exc}", api_key(collection))
    seconds = time.perf_counter() - started
    if failure is None and seconds > timeout:
        failure = f"{collection.model} answered in {seconds:.1f} s, over the {timeout:g} s timeout"
    runtime = f" on {local_runtime()}" if collection.model == providers.LOCAL_MODEL else ""
    reason = failure or f"answered in {seconds:.2f} s{runtime}"
    return {"ok": failure is None, "reason": reason, "seconds": seconds, "load_seconds": load_seconds}


def local_runtime() -> str:
    """Which runtime embeds the local model, and why PyTorch if the OpenVINO export was refused."""
    local = encoder.current()
    return encoder.label(local) + (f" ({local.reason})" if local.reason else "")


def _configurations() -> dict[str, list[Collection]]:
    """Active collections by model configuration: collections sharing one share its health."""
    configurations: dict[str, list[Collection]] = {}
    for collection in Collection.objects.filter(paused=False).order_by("name"):
        key = json.dumps([getattr(collection, name) for name in Collection.SERVING_FIELDS], sort_keys=True, default=str)
        configurations.setdefault(hashlib.sha256(key.encode()).hexdigest(), []).append(collection)
    return configurations


def model_checks(timeout: float, max_age: float) -> list[ModelCheck]:
    """Every active configuration's probe, each younger than `max_age` seconds (0: probe now). Stale
    ones are probed under an advisory lock: concurrent callers wait for one refresher's stored results."""
    configurations = _configurations()
    checks = _fresh_checks(configurations, max_age)
    if len(checks) == len(configurations):
        return [checks[key] for key in configurations]
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", [MODEL_CHECK_LOCK])
        checks = _fresh_checks(configurations, max_age)  # another process may have just probed
        for key, collections in configurations.items():
            if key in checks:
                continue
            probed = _probe_model(collections[0], timeout)
            checks[key], _ = ModelCheck.objects.update_or_create(
                key=key,
                defaults={
                    "model": collections[0].model,
                    "collections": [c.name for c in collections],
                    **probed,
                    "checked_at": timezone.now(),
                },
            )
        ModelCheck.objects.exclude(key__in=configurations).delete()  # configurations no longer active
    return [checks[key] for key in configurations]


def _fresh_checks(configurations: dict[str, list[Collection]], max_age: float) -> dict[str, ModelCheck]:
    if not max_age:
        return {}
    fresh_after = timezone.now() - timedelta(seconds=max_age)
    return {c.key: c for c in ModelCheck.objects.filter(key__in=configurations, checked_at__gt=fresh_after)}


def check_model(timeout: float | None = None, max_age: float = 0) -> CheckResult:
    """Every active model configuration answers; probes younger than `max_age` s are reused."""
    timeout = timeout or settings.EMBEDPORTAL_HEALTH_MODEL_TIMEOUT

    def run(details: dict[str, Any]) -> str:
        checks = model_checks(timeout, max_age)
        details["models"] = sorted({c.model for c in checks})
        details["configurations"] = [
            {
                "model": c.model,
                "collections": c.collections,
                "ok": c.ok,
                "reason": c.reason,
                "seconds": round(c.seconds, 4),
                "load_seconds": round(c.load_seconds, 4),
                "checked_at": c.checked_at.isoformat(),
            }
            for c in checks
        ]
        if providers.LOCAL_MODEL in details["models"]:
            details["local_encoder"] = encoder.describe()
        # Open circuits (pipeline.circuits): the workers have stopped calling these endpoints.
        details["circuits"] = [circuits.describe(c) for c in circuits.not_closed()]
        if not checks:
            return "no active collections: nothing to embed with"
        failed = [c.reason for c in checks if not c.ok]
        open_circuits = [
            f"{c['endpoint']}: circuit {c['state'].replace('_', '-')} after {c['last_error_type'] or 'errors'}, "
            f"its collections wait (next probe in {c['next_probe_in_seconds']:.0f} s)"
            for c in details["circuits"]
        ]
        if failed and len(failed) + len(open_circuits) > 1:  # one problem alone is told as it is
            failed = [f"{len(failed)} of {len(checks)} model configurations failed: " + "; ".join(failed)]
        if failed or open_circuits:
            raise CheckFailed("; ".join(failed + open_circuits))
        return f"{len(checks)} model configuration(s) answered: {', '.join(details['models'])}"

    return _timed("model", run)


def check_pgvector() -> CheckResult:
    def run(details: dict[str, Any]) -> str:
        try:
            with bounded_queries(CHECK_STATEMENT_TIMEOUT_MS) as cur:
                details["pgvector"] = _pgvector_version(cur)
                # The document and collection ids do not exist: the foreign keys are deferred (explicitly:
                # an enclosing transaction may have made them immediate) to a commit that never comes.
                cur.execute("SET CONSTRAINTS ALL DEFERRED")
                cur.execute(
                    "INSERT INTO pipeline_chunk (document_id, collection_id, ordinal, text, token_count, embedding)"
                    " VALUES (-1, -1, 0, %s, 0, '[1,2,3]'::vector) RETURNING embedding::text",
                    [PROBE_TEXT],
                )
                if cur.fetchone()[0] != "[1,2,3]":
                    raise CheckFailed("a vector did not read back as written")
                transaction.set_rollback(True)  # the probe row (and the SET) goes
        except DatabaseError as exc:
            cause = exc.__cause__ or exc
            raise CheckFailed(f"cannot write a vector row: {type(cause).__name__}: {cause}".strip()) from None
        return f"wrote and rolled back a vector row (pgvector {details['pgvector']})"

    return _timed("pgvector", run)


def check_queue() -> CheckResult:
    def run(details: dict[str, Any]) -> str:
        now = timezone.now()
        max_age = timedelta(seconds=settings.EMBEDPORTAL_HEARTBEAT_MAX_AGE)
        window = timedelta(seconds=settings.EMBEDPORTAL_HEALTH_PROGRESS_WINDOW)
        with bounded_queries(CHECK_STATEMENT_TIMEOUT_MS):
            latest = WorkerHeartbeat.objects.aggregate(at=Max("beat_at"))["at"]
            alive_processes = list(WorkerHeartbeat.objects.fresh(max_age).values_list("worker", flat=True))
            alive = len(alive_processes)
            # Work a worker could do: paused collections, documents in backoff and work behind an open
            # circuit (the model check reports the outage) are waiting, but no worker is at fault.
            active = Document.objects.workable()
            oldest = active.oldest_due_at(now)
            # Documents a dead worker still holds are waiting too, lease or not.
            stranded = active.stranded(alive_processes, now).aggregate(n=Count("id"), since=Min("updated_at"))
            if stranded["n"] and (oldest is None or stranded["since"] < oldest):
                oldest = stranded["since"]
            last_embedded = Document.objects.aggregate(at=Max("last_embedded_at"))["at"]
        details.update(
            workers_alive=alive,
            last_heartbeat=latest.isoformat() if latest else None,
            oldest_pending_seconds=round((now - oldest).total_seconds(), 1) if oldest else 0,
            stranded_documents=stranded["n"],
            last_embedded=last_embedded.isoformat() if last_embedded else None,
        )
        if not alive:
            # No row is not "never": a starting worker deletes its host's killed processes' rows, and a clean
            # stop its own. The last embedding outlives both (after a kill this said "none ever").
            if latest:
                seen = f"last one {(now - latest).total_seconds():.0f} s ago"
            elif last_embedded:
                seen = f"none on record; a document was last embedded {(now - last_embedded).total_seconds():.0f} s ago"
            else:
                seen = "none on record, nothing embedded yet"
            raise CheckFailed(f"no worker heartbeat in the last {max_age.total_seconds():.0f} s ({seen})")
        if oldest is None:
            with bounded_queries(CHECK_STATEMENT_TIMEOUT_MS):
                later = Document.objects.filter(status=DocumentStatus.PENDING).count()
            # Deferred, paused or behind an open circuit: waiting, but not "nothing to do".
            return f"{alive} worker(s) alive; " + (f"{later} pending, none due now" if later else "no pending work")
        waited = now - oldest
        held = f"; {stranded['n']} held by expired or dead leases" if stranded["n"] else ""
        if waited > window and (last_embedded is None or now - last_embedded > window):
            raise CheckFailed(
                f"work has waited {waited.total_seconds():.0f} s and nothing was embedded in the last "
                f"{window.total_seconds():.0f} s{held}"
            )
        return f"{alive} worker(s) alive; oldest pending work waited {waited.total_seconds():.0f} s{held}"

    return _timed("queue", run)


CHECKS: dict[str, Callable[[], CheckResult]] = {"model": check_model, "pgvector": check_pgvector, "queue": check_queue}


def run_checks(names: list[str] | None = None, cached: bool = False) -> list[CheckResult]:
    """The checks; `cached` reuses model probes younger than EMBEDPORTAL_HEALTH_MODEL_CACHE_SECONDS."""
    max_age = settings.EMBEDPORTAL_HEALTH_MODEL_CACHE_SECONDS if cached else 0
    return [check_model(max_age=max_age) if name == "model" else CHECKS[name]() for name in names or CHECKS]


def report(results: list[CheckResult]) -> dict[str, Any]:
    return {"healthy": all(r.ok for r in results), "checks": [r.as_dict() for r in results]}


OPERATORS_ONLY = "its reason is shown to platform operators (it names every team's collections)"


def for_viewer(results: list[CheckResult], user: Any) -> list[CheckResult]:
    """Every reason and detail for a platform operator; pass/fail for a team member, as for anonymous
    callers: the reasons name every team's collections and models."""
    if sees_all_collections(user):
        return results
    return [CheckResult(r.name, r.ok, OPERATORS_ONLY, r.seconds) for r in results]


def summary(results: list[CheckResult]) -> dict[str, Any]:
    """Pass/fail only, for anonymous callers: no collection names, models or provider errors."""
    return {"healthy": all(r.ok for r in results), "checks": [{"name": r.name, "ok": r.ok} for r in results]}


_migrated = False


def readiness() -> CheckResult:
    """The database answers, every migration is applied, and pgvector is installed."""

    def run(details: dict[str, Any]) -> str:
        global _migrated
        details["code_version"] = code_version()
        with connection.cursor() as cur:
            version = _pgvector_version(cur)
        # Loading the migration graph costs tens of ms: once applied, a process need not ask again.
        if not _migrated:
            executor = MigrationExecutor(connection)
            plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
            if plan:
                raise CheckFailed(f"{len(plan)} migration(s) not applied, first {plan[0][0]}")
            _migrated = True
        return f"database reachable, migrations applied, pgvector {version}"

    return _timed("ready", run)


def liveness() -> CheckResult:
    """The process serves requests; deliberately no database, so an outage restarts nothing."""
    return CheckResult("live", True, "process is serving requests")
