"""A scenario's `Context`: reserved collections, a client as the ops user, fault providers, bounded waits."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone
from django.utils.crypto import get_random_string

from pipeline import queue
from pipeline.choices import DocumentStatus
from pipeline.collections import create_collection
from pipeline.models import RESERVED_PREFIX, Collection, Document, ProviderCircuit, WorkerHeartbeat, reserved_names
from pipeline.wakeup import kick_workers
from testing.fakeprovider import FakeProvider
from testing.logs import OPS_TEST_REQUEST
from testing.models import TestRun
from testing.registry import Scenario, ScenarioFailed, ScenarioSkipped
from testing.reserved import delete_reserved, wait_until

logger = logging.getLogger(__name__)

OPS_USERNAME = "__ops_test__"
# What the scenarios do through the API and the admin as the ops user (the pipeline app's permissions).
OPS_PERMISSIONS = """
    view_collection add_collection change_collection view_document add_document delete_document view_chunk
    pause_collection access_all_collections
""".split()
# The model of the failure scenarios' collections, served by their fault provider.
FAULT_MODEL = "openai/ops-test-fault"


def ops_user() -> Any:
    User = get_user_model()
    unusable = {"is_staff": True, "is_active": True, "password": make_password(None)}
    user, created = User.objects.get_or_create(username=OPS_USERNAME, defaults=unusable)
    # A platform operator (its collections have no team); a user made by an older version gets what it lacks.
    if created or not user.has_perms([f"pipeline.{codename}" for codename in OPS_PERMISSIONS]):
        granted = Permission.objects.filter(content_type__app_label="pipeline", codename__in=OPS_PERMISSIONS)
        user.user_permissions.set(granted)
        user = User.objects.get(pk=user.pk)  # has_perms cached the permissions it had
    return user


class OpsTestClient(Client):
    def request(self, **request: Any) -> Any:
        marked = OPS_TEST_REQUEST.set(True)
        try:
            return super().request(**request)
        finally:
            OPS_TEST_REQUEST.reset(marked)


class Context:
    def __init__(self, run: TestRun, scenario: Scenario, target: str = "") -> None:
        self.run = run
        self.scenario = scenario
        self.target = target
        self.wait_seconds = settings.EMBEDPORTAL_OPS_TEST_WAIT_SECONDS
        self.deadline = time.monotonic() + scenario.timeout
        self._collections: list[Collection] = []
        self._providers: list[Any] = []
        self._client: OpsTestClient | None = None

    @staticmethod
    def check(condition: Any, message: str) -> None:
        if not condition:
            raise ScenarioFailed(message)

    @staticmethod
    def fail(message: str) -> NoReturn:
        raise ScenarioFailed(message)

    @staticmethod
    def skip(message: str) -> NoReturn:
        raise ScenarioSkipped(message)

    def collection(self, suffix: str = "c", **fields: Any) -> Collection:
        """A reserved collection (hash model, character chunks unless told otherwise), deleted afterwards."""
        defaults: dict[str, Any] = {
            "model": "local/hash-16",
            "chunking_strategy": "recursive",
            "chunk_unit": "characters",
            "chunk_size": 400,
            "chunk_overlap": 0,
            "batch_size": 32,
            # Scenarios search hash vectors with a chunk's exact text: chunks are embedded alone.
            "contextual_chunks": False,
        }
        name = f"{RESERVED_PREFIX}{self.run.pk}_{len(self._collections) + 1}_{suffix}"[:63]
        with reserved_names():
            collection = create_collection(name=name, **{**defaults, **fields})
        self._collections.append(collection)
        return collection

    def client(self) -> OpsTestClient:
        """Requests as the ops user through the real routing, middleware, DRF and admin, in this process (the
        web pods may be unreachable), CSRF enforced as a browser sends it; a 500 is an answer, not an exception."""
        if self._client is None:
            token = get_random_string(32)  # CSRF_SECRET_LENGTH letters and digits, as Django makes them
            hosts = ("localhost" if h == "*" else h for h in settings.ALLOWED_HOSTS if h and not h.startswith("."))
            self._client = OpsTestClient(
                enforce_csrf_checks=True,
                raise_request_exception=False,
                HTTP_HOST=next(hosts, "localhost"),
                HTTP_X_CSRFTOKEN=token,
            )
            self._client.cookies[settings.CSRF_COOKIE_NAME] = token
            self._client.force_login(ops_user())
        return self._client

    def post(self, collection: Collection, payload: Any, endpoint: str = "documents") -> Any:
        url = f"/api/v1/collections/{collection.name}/{endpoint}/"
        return self.client().post(url, payload, content_type="application/json")

    def expect(self, response: Any, status: int, what: str, named: str = "") -> str:
        """Fail unless `what` was answered `status` with an error message (else the answer's start) naming `named`."""
        try:
            message = str(response.json()["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = response.content[:200].decode(errors="replace")
        self.check(
            response.status_code == status, f"{what} answered {response.status_code}, expected {status}: {message}"
        )
        self.check(named.lower() in message.lower(), f"the {status} for {what} does not name {named!r}: {message}")
        return message

    def check_first(self, found: list[str], expected: str, what: str) -> None:
        self.check(found[:1] == [expected], f"{what} did not find {expected} at rank 1: {found}")

    def enqueue(self, collection: Collection, docs: Iterable[tuple[str, str]]) -> queue.EnqueueResult:
        return queue.enqueue(collection, [queue.IncomingDocument(i, t) for i, t in docs])

    def fault_provider(self, mode: str = "ok") -> FakeProvider:
        """The fault-injecting provider answering `mode` on the configured address (in Kubernetes the pod's,
        opened to the workers by NetworkPolicy embedportal-ops-tests-fault-provider); one scenario's at a time."""
        host, port = settings.EMBEDPORTAL_OPS_TEST_FAULT_HOST, settings.EMBEDPORTAL_OPS_TEST_FAULT_PORT
        # A "timeout" answer comes after 5 s: past the scenarios' 1 s client timeout, and short-lived.
        provider = FakeProvider(timeout_seconds=5, address=(host, port)).start()
        provider.mode = mode
        url_host = settings.EMBEDPORTAL_OPS_TEST_FAULT_URL_HOST or host
        provider.url = f"http://{url_host}:{provider.server.server_address[1]}/v1"
        self._providers.append(provider)
        return provider

    def fault_collection(self, suffix: str, mode: str = "ok", **fields: Any) -> tuple[FakeProvider, Collection]:
        """A reserved collection embedded by a new fault provider answering `mode`."""
        provider = self.fault_provider(mode)
        return provider, self.collection(
            suffix,
            model=FAULT_MODEL,
            api_base=provider.url,
            # LiteLLM insists on a key: DJANGO_SETTINGS_MODULE is set in every process and no secret,
            # and a 401 echoing it shows whether messages are scrubbed.
            api_key_env="DJANGO_SETTINGS_MODULE",
            dimensions=provider.dims,
            batch_size=8,
            **fields,
        )

    def require_workers(self) -> None:
        """Fail at once, naming the cause, when no pipeline worker process is alive."""
        if not fresh_workers():
            latest = WorkerHeartbeat.objects.order_by("-beat_at").values_list("beat_at", flat=True).first()
            seen = f"last one {(timezone.now() - latest).total_seconds():.0f} s ago" if latest else "none on record"
            self.fail(
                "no pipeline worker is running: no worker heartbeat in the last "
                f"{settings.EMBEDPORTAL_HEARTBEAT_MAX_AGE:.0f} s ({seen}); "
                "start `manage.py qcluster` or `manage.py run_pipeline`"
            )

    def wait_until(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Poll up to `timeout` (default the wait setting) within the scenario's timeout."""
        left = max(0.0, min(self.deadline - time.monotonic(), timeout if timeout is not None else self.wait_seconds))
        return wait_until(predicate, left)

    def wait_documents(
        self,
        collection: Collection,
        ids: Iterable[str] | None = None,
        until: Iterable[str] = (DocumentStatus.EMBEDDED,),
        timeout: float | None = None,
    ) -> dict[str, str]:
        """Wait for the workers to finish the documents; id -> status. A failure names the cause."""
        self.require_workers()
        qs = Document.objects.filter(collection=collection)
        if ids is not None:
            qs = qs.filter(external_id__in=list(ids))
        final = {DocumentStatus.EMBEDDED, DocumentStatus.FAILED}
        kicked = waited = time.monotonic()

        def done() -> bool:
            nonlocal kicked
            # Expired leases and backoffs are announced by no enqueue: kick now and then.
            if time.monotonic() - kicked > 5:
                kick_workers()
                kicked = time.monotonic()
            return not qs.exclude(status__in=final).exists()

        finished = self.wait_until(done, timeout)
        statuses = dict(qs.values_list("external_id", "status"))
        if not finished:
            counts = Counter(statuses.values())
            waiting = counts[DocumentStatus.PENDING] + counts[DocumentStatus.PROCESSING]
            # A document the workers deferred (provider failing, circuit open) carries why.
            deferred = qs.filter(status=DocumentStatus.PENDING, last_error__startswith="deferred")
            why = deferred.values_list("last_error", flat=True).first()
            idle = "the workers are stopped, stuck or busy elsewhere"
            cause = f"the workers deferred them, {why[:500]}" if why else idle
            self.fail(
                f"{waiting} of {len(statuses)} document(s) not processed by the workers within "
                f"{time.monotonic() - waited:.0f} s ({dict(counts)}); "
                f"{fresh_workers()} worker heartbeat(s) fresh: {cause}"
            )
        wanted = set(until)
        wrong = {i: s for i, s in statuses.items() if s not in wanted}
        if wrong:
            first = next(iter(wrong))
            error = qs.filter(external_id=first).values_list("last_error", flat=True).first()
            self.fail(
                f"{len(wrong)} document(s) ended {sorted(set(wrong.values()))} instead of {sorted(wanted)}; "
                f"{first}: {error or 'no error recorded'}"
            )
        return statuses

    def cleanup(self, timeout: float | None = None) -> None:
        for provider in self._providers:
            try:
                provider.stop()
            except Exception:  # noqa: BLE001 -- clean-up goes on
                logger.exception("could not stop the fault provider")
        for collection in self._collections:
            delete_reserved(collection.pk, timeout)
        # The faults gave the endpoint a circuit row: left, the circuit gauge and model health check would
        # list one per run, and with a fixed port the next scenario would inherit its failure count.
        ProviderCircuit.objects.filter(model=FAULT_MODEL, api_base__in=[p.url for p in self._providers]).delete()
        if self._client is not None:
            self._client.logout()
        self._collections, self._providers, self._client = [], [], None


def fresh_workers() -> int:
    return WorkerHeartbeat.objects.alive().count()
