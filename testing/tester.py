"""EmbeddingPipelineOperationsTester: runs registered scenarios against the live system.

The deployment's own database and running workers (django-q2 qcluster or run_pipeline), not a
test database. Everything a scenario writes lives in reserved collections (`__ops_test_...`,
a prefix producers cannot use) created through `Context` and deleted when the scenario ends;
user collections are never changed.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import ThreadingHTTPServer
from threading import Thread
from typing import Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.utils import timezone

from pipeline import queue
from pipeline.backfill import BUILD_LOCK
from pipeline.choices import DocumentStatus
from pipeline.collections import create_collection
from pipeline.models import (
    RESERVED_PREFIX,
    Collection,
    Document,
    ProviderCircuit,
    WorkerHeartbeat,
    reserved_names_allowed,
)
from testing import fingerprints
from testing.choices import Outcome, RunStatus, Trigger
from testing.inprocess import InProcessClient
from testing.models import TestResult, TestRun
from testing.registry import Scenario, ScenarioFailed, ScenarioSkipped, select
from testing.scrub import scrub

logger = logging.getLogger(__name__)

OPS_USERNAME = "__ops_test__"
# What the scenarios do through the API and the admin as the ops user.
OPS_PERMISSIONS = (
    "pipeline.view_collection",
    "pipeline.add_collection",
    "pipeline.change_collection",
    "pipeline.view_document",
    "pipeline.add_document",
    "pipeline.view_chunk",
    "pipeline.pause_collection",
)
POLL_SECONDS = 0.2
# The model of the failure scenarios' collections, served by their fault provider.
FAULT_MODEL = "openai/ops-test-fault"


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


def ops_user() -> Any:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    User = get_user_model()
    user, created = User.objects.get_or_create(username=OPS_USERNAME, defaults={"is_staff": True, "is_active": True})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
        perms = []
        for name in OPS_PERMISSIONS:
            app, codename = name.split(".")
            perms.extend(Permission.objects.filter(content_type__app_label=app, codename=codename))
        user.user_permissions.set(perms)
    return user


def _request_host() -> str:
    for host in settings.ALLOWED_HOSTS:
        if host == "*":
            return "localhost"
        if host and not host.startswith("."):
            return host
    return "localhost"


class Context:
    """What a scenario works with: reserved collections, the API/admin client, the fault
    provider, and waiting for the real workers with a bound."""

    def __init__(self, run: TestRun, scenario: Scenario, target: str = "", wait_seconds: float | None = None) -> None:
        self.run = run
        self.scenario = scenario
        self.target = target
        self.wait_seconds = wait_seconds or settings.EMBEDPORTAL_OPS_TEST_WAIT_SECONDS
        self.deadline = time.monotonic() + scenario.timeout
        self._collections: list[Collection] = []
        self._providers: list[Any] = []
        self._client: InProcessClient | None = None
        self._counter = 0

    # -- assertions ------------------------------------------------------------------------

    @staticmethod
    def check(condition: Any, message: str) -> None:
        if not condition:
            raise ScenarioFailed(message)

    @staticmethod
    def fail(message: str) -> None:
        raise ScenarioFailed(message)

    @staticmethod
    def skip(message: str) -> None:
        raise ScenarioSkipped(message)

    # -- reserved collections --------------------------------------------------------------

    def name(self, suffix: str) -> str:
        self._counter += 1
        return f"{RESERVED_PREFIX}{self.run.pk}_{self._counter}_{suffix}"[:63]

    def collection(self, suffix: str = "c", **fields: Any) -> Collection:
        """A reserved collection (hash model, character chunks unless told otherwise), deleted afterwards."""
        defaults: dict[str, Any] = {
            "model": "local/hash-16",
            "chunking_strategy": "recursive",
            "chunk_unit": "characters",
            "chunk_size": 400,
            "chunk_overlap": 0,
            "batch_size": 32,
        }
        with reserved_names():
            collection = create_collection(name=self.name(suffix), **{**defaults, **fields})
        self._collections.append(collection)
        return collection

    def adopt(self, name: str) -> Collection:
        """Track a reserved collection created another way (API, command) for clean-up."""
        collection = Collection.objects.get(name=name)
        self._collections.append(collection)
        return collection

    # -- the live paths --------------------------------------------------------------------

    def client(self) -> InProcessClient:
        """Requests as the ops user through the real URL routing, middleware, DRF and admin code."""
        if self._client is None:
            self._client = InProcessClient(_request_host(), ops_user())
        return self._client

    def enqueue(self, collection: Collection, docs: Iterable[tuple[str, str]]) -> queue.EnqueueResult:
        return queue.enqueue(collection, [queue.IncomingDocument(i, t) for i, t in docs])

    def fault_provider(self, dims: int = 8) -> Any:
        """The fault-injecting OpenAI-compatible provider, reachable by the workers."""
        from testing.fakeprovider import FakeProvider

        # A "timeout" answer comes after 5 s: past the scenarios' 1 s client timeout, and short-lived.
        provider = FakeProvider(dims=dims, timeout_seconds=5)
        host, port = settings.EMBEDPORTAL_OPS_TEST_FAULT_HOST, settings.EMBEDPORTAL_OPS_TEST_FAULT_PORT
        if (host, port) != ("127.0.0.1", 0):
            # Rebind on the configured address and port (the pod's, opened to the workers by the
            # NetworkPolicy embedportal-ops-tests-fault-provider), keeping the provider's handler.
            # One provider at a time: each scenario stops its provider before the next starts.
            handler = provider.server.RequestHandlerClass
            provider.server.server_close()
            provider.server = ThreadingHTTPServer((host, port), handler)
            provider.server.daemon_threads = True
            provider.thread = Thread(target=provider.server.serve_forever, daemon=True)
        provider.start()
        url_host = settings.EMBEDPORTAL_OPS_TEST_FAULT_URL_HOST or host
        provider.url = f"http://{url_host}:{provider.server.server_address[1]}/v1"
        self._providers.append(provider)
        return provider

    def fault_collection(self, provider: Any, suffix: str = "fault", **fields: Any) -> Collection:
        return self.collection(
            suffix,
            model=FAULT_MODEL,
            api_base=provider.url,
            # LiteLLM's OpenAI client insists on a key. DJANGO_SETTINGS_MODULE is set in every
            # process of the deployment (manage.py, wsgi) and is no secret: the fault provider
            # receives "embedportal.settings", and a 401 echoing it shows whether messages are scrubbed.
            api_key_env="DJANGO_SETTINGS_MODULE",
            dimensions=provider.dims,
            batch_size=8,
            **fields,
        )

    # -- waiting for the real workers ------------------------------------------------------

    def remaining(self, limit: float | None = None) -> float:
        left = self.deadline - time.monotonic()
        return max(0.0, min(left, limit if limit is not None else self.wait_seconds))

    def require_workers(self) -> int:
        """Fail at once, naming the cause, when no pipeline worker process is alive."""
        max_age = timedelta(seconds=settings.EMBEDPORTAL_HEARTBEAT_MAX_AGE)
        alive = WorkerHeartbeat.objects.fresh(max_age).count()
        if not alive:
            latest = WorkerHeartbeat.objects.order_by("-beat_at").values_list("beat_at", flat=True).first()
            seen = f"last one {(timezone.now() - latest).total_seconds():.0f} s ago" if latest else "none ever"
            self.fail(
                f"no pipeline worker is running: no worker heartbeat in the last {max_age.total_seconds():.0f} s "
                f"({seen}); start `manage.py qcluster` or `manage.py run_pipeline`"
            )
        return alive

    def wait_until(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        deadline = time.monotonic() + self.remaining(timeout)
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)

    def wait_documents(
        self,
        collection: Collection,
        ids: Iterable[str] | None = None,
        until: Iterable[str] = (DocumentStatus.EMBEDDED,),
        timeout: float | None = None,
    ) -> dict[str, str]:
        """Wait for the running workers to bring the documents to a final state; returns id -> status.

        Fails naming the cause: no worker alive, or documents still pending/processing.
        """
        from pipeline.wakeup import kick_workers

        self.require_workers()
        qs = Document.objects.filter(collection=collection)
        if ids is not None:
            qs = qs.filter(external_id__in=list(ids))
        final = {DocumentStatus.EMBEDDED, DocumentStatus.FAILED}
        kicked = time.monotonic()

        def done() -> bool:
            nonlocal kicked
            # Expired leases and backoffs are announced by no enqueue: kick now and then.
            if time.monotonic() - kicked > 5:
                kick_workers()
                kicked = time.monotonic()
            return not qs.exclude(status__in=final).exists()

        waited = time.monotonic()
        finished = self.wait_until(done, timeout)
        statuses = dict(qs.values_list("external_id", "status"))
        if not finished:
            counts = Counter(statuses.values())
            alive = WorkerHeartbeat.objects.fresh(timedelta(seconds=settings.EMBEDPORTAL_HEARTBEAT_MAX_AGE)).count()
            waiting = counts[DocumentStatus.PENDING] + counts[DocumentStatus.PROCESSING]
            self.fail(
                f"{waiting} of {len(statuses)} document(s) not processed by the workers within "
                f"{time.monotonic() - waited:.0f} s ({dict(counts)}); {alive} worker heartbeat(s) fresh: "
                "the workers are stopped, stuck or busy elsewhere"
            )
        wanted = set(until)
        wrong = {i: s for i, s in statuses.items() if s not in wanted}
        if wrong:
            errors = dict(
                Document.objects.filter(collection=collection, external_id__in=list(wrong)).values_list(
                    "external_id", "last_error"
                )
            )
            first = next(iter(wrong))
            self.fail(
                f"{len(wrong)} document(s) ended {sorted(set(wrong.values()))} instead of {sorted(wanted)}; "
                f"{first}: {errors.get(first) or 'no error recorded'}"
            )
        return statuses

    # -- clean-up --------------------------------------------------------------------------

    def cleanup(self) -> None:
        for provider in self._providers:
            try:
                provider.stop()
            except Exception:  # noqa: BLE001 -- clean-up goes on
                logger.exception("could not stop the fault provider")
        for collection in self._collections:
            delete_reserved(collection.pk)
        # The faults gave the provider endpoint a circuit row (shared through the database): left,
        # the circuit gauge and the model health check would list one per run (a new port or pod
        # IP each time), and with a fixed port the next scenario would inherit its failure count.
        # Its collections are gone, so no worker records on it any more.
        ProviderCircuit.objects.filter(model=FAULT_MODEL, api_base__in=[p.url for p in self._providers]).delete()
        if self._client is not None:
            self._client.logout()
        self._collections, self._providers, self._client = [], [], None


class EmbeddingPipelineOperationsTester:
    """Runs a selection of registered scenarios as one TestRun (one run at a time)."""

    def __init__(
        self,
        categories: Iterable[str] = (),
        scenarios: Iterable[str] = (),
        quick: bool = False,
        collections: Iterable[str] = (),
        trigger: str = Trigger.CLI,
        requested_by: str = "",
        wait_seconds: float | None = None,
        progress: Callable[[TestResult], None] | None = None,
    ) -> None:
        self.categories, self.names, self.quick = list(categories), list(scenarios), quick
        self.collections = list(collections)
        self.selected = select(self.categories, self.names, quick=quick)
        self.trigger, self.requested_by = trigger, requested_by
        self.wait_seconds = wait_seconds
        self.progress = progress

    def selection(self) -> dict[str, Any]:
        return {
            "categories": self.categories,
            "scenarios": self.names,
            "quick": self.quick,
            "collections": self.collections,
        }

    def start(self) -> TestRun:
        """Take the one-run slot (raises RunInProgress naming the running run)."""
        return TestRun.objects.start(
            trigger=self.trigger,
            selection=self.selection(),
            requested_by=self.requested_by,
            code_version=fingerprints.code_version(),
            config_fingerprint=fingerprints.config_fingerprint(),
        )

    def run(self) -> TestRun:
        return self.execute(self.start())

    def execute(self, run: TestRun) -> TestRun:
        counts: Counter[str] = Counter()
        try:
            sweep_reserved()
            for scenario in self.selected:
                for target in self._targets(scenario):
                    result = self.run_scenario(run, scenario, target)
                    counts[result.outcome] += 1
                    TestRun.objects.beat(run.pk)
                    if self.progress:
                        self.progress(result)
        except Exception as exc:  # noqa: BLE001 -- the run records why it broke
            logger.exception("test run %s broke", run.pk)
            TestRun.objects.finish(run.pk, RunStatus.ERROR, dict(counts), scrub(f"{type(exc).__name__}: {exc}"))
        else:
            bad = counts[Outcome.FAILED] + counts[Outcome.ERROR]
            TestRun.objects.finish(run.pk, RunStatus.FAILED if bad else RunStatus.PASSED, dict(counts))
        run.refresh_from_db()
        return run

    def _targets(self, scenario: Scenario) -> list[str]:
        return self.collections or [""] if scenario.per_collection else [""]

    def run_scenario(self, run: TestRun, scenario: Scenario, target: str = "") -> TestResult:
        started_at, started = timezone.now(), time.perf_counter()
        attempts: list[dict[str, Any]] = []
        details: dict[str, Any] = {}
        for attempt in range(1 + scenario.retries):
            outcome, message, measured = self._attempt(run, scenario, target)
            attempts.append({"attempt": attempt + 1, "outcome": outcome, "message": message})
            details = measured or details
            if outcome in (Outcome.PASSED, Outcome.SKIPPED):
                break
        final = attempts[-1]
        outcome = final["outcome"]
        if outcome == Outcome.PASSED and len(attempts) > 1:
            outcome = Outcome.FLAKY  # a pass on retry is evidence of flakiness, never plain green
        message = (
            final["message"]
            if outcome != Outcome.FLAKY
            else f"passed on attempt {len(attempts)}: " + "; ".join(a["message"] for a in attempts[:-1])
        )
        return TestResult.objects.create(
            run=run,
            scenario=scenario.name,
            category=scenario.category,
            component=scenario.component,
            target=target,
            outcome=outcome,
            attempts=len(attempts),
            started_at=started_at,
            duration_seconds=time.perf_counter() - started,
            message=scrub(message)[:4000],
            details={**details, "attempts": attempts} if len(attempts) > 1 else details,
        )

    def _attempt(self, run: TestRun, scenario: Scenario, target: str) -> tuple[str, str, dict[str, Any]]:
        ctx = Context(run, scenario, target, self.wait_seconds)
        started = time.monotonic()
        try:
            measured = scenario.func(ctx) or {}
            outcome, message = Outcome.PASSED, ""
            elapsed = time.monotonic() - started
            if elapsed > scenario.timeout:
                outcome, message = Outcome.FAILED, f"took {elapsed:.0f} s, over its {scenario.timeout:g} s timeout"
        except ScenarioFailed as exc:
            outcome, message, measured = Outcome.FAILED, str(exc), {}
        except ScenarioSkipped as exc:
            outcome, message, measured = Outcome.SKIPPED, str(exc), {}
        except Exception as exc:  # noqa: BLE001 -- a broken scenario is a result, not a broken run
            outcome, measured = Outcome.ERROR, {}
            message = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
            close_old_connections()
        finally:
            try:
                ctx.cleanup()
            except Exception:  # noqa: BLE001
                logger.exception("clean-up of scenario %s failed", scenario.name)
        return outcome, scrub(message), _jsonable(measured)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return round(value, 6)
    return value
