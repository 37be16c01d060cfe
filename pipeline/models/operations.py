"""Operational state shared by all workers: heartbeats, provider circuits, model probes."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from urllib.parse import urlsplit

import psutil
from django.conf import settings
from django.db import connections, models, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from pipeline.choices import CircuitState, ErrorType, WorkerRole
from pipeline.models.collection import Collection, sees_all_collections
from pipeline.wakeup import wake_workers

# The django-q2 heartbeat schedule beats every minute: two missed beats and slack before its row is dead.
SCHEDULE_MAX_AGE = timedelta(seconds=150)


def process_name() -> str:
    """host:pid, the key of a process's WorkerHeartbeat (pipeline worker ids start with it)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class WorkerHeartbeatQuerySet(models.QuerySet["WorkerHeartbeat"]):
    def beat(self, role: str, worker: str | None = None) -> None:
        """Upsert a process's heartbeat, keyed by host:pid (a django-q2 process runs many drain tasks, one
        row); a drain's beat keeps a live schedule row's role, so an idle cluster's health does not flap."""
        with connections[self.db].cursor() as cur:
            cur.execute(
                f"INSERT INTO {WorkerHeartbeat._meta.db_table} AS h (worker, role, started_at, beat_at) "
                "VALUES (%s, %s, now(), now()) ON CONFLICT (worker) DO UPDATE SET beat_at = EXCLUDED.beat_at, "
                "role = CASE WHEN h.role = %s AND h.beat_at >= now() - %s THEN h.role ELSE EXCLUDED.role END",
                [worker or process_name(), role, WorkerRole.SCHEDULE, SCHEDULE_MAX_AGE],
            )

    def fresh(self, max_age: timedelta) -> WorkerHeartbeatQuerySet:
        """Processes alive: a beat within `max_age` (workers beat every HEARTBEAT_EVERY seconds, busy
        or idle), or, for the every-minute schedule's rows, within SCHEDULE_MAX_AGE."""
        now = timezone.now()
        return self.filter(
            Q(beat_at__gte=now - max_age) | Q(role=WorkerRole.SCHEDULE, beat_at__gte=now - SCHEDULE_MAX_AGE)
        )

    def alive(self) -> WorkerHeartbeatQuerySet:
        """fresh() at EMBEDPORTAL_HEARTBEAT_MAX_AGE: the processes the health check counts as alive."""
        return self.fresh(timedelta(seconds=settings.EMBEDPORTAL_HEARTBEAT_MAX_AGE))

    def stop(self) -> int:
        """A process stopping cleanly removes its row: it must not count as alive once gone."""
        return self.filter(worker=process_name()).delete()[0]

    def forget_the_dead_here(self) -> int:
        """Remove this host's rows whose process is gone (killed: no clean stop removed them), so a worker
        restarted after a kill is not counted beside its dead predecessors until their rows age out. A
        pid in use again keeps its row, which ages out as before."""
        host = f"{socket.gethostname()}:"
        workers = self.filter(worker__startswith=host).values_list("worker", flat=True)
        # A row that is not host:pid is left alone.
        dead = [w for w in workers if (pid := w.removeprefix(host)).isdigit() and _gone(int(pid))]
        return self.filter(worker__in=dead).delete()[0]


def _gone(pid: int) -> bool:
    """No such process, or a zombie: a killed cluster's workers are reaped by whoever inherits them, and until
    then a restarted cluster counted them alive beside its own. Another user's process exists."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.AccessDenied:
        return False


class WorkerHeartbeat(models.Model):
    """A pipeline worker process (host:pid) said it was alive at `beat_at`: written by workers, drain tasks
    and the every-minute schedule; read by the queue health check and the overview page."""

    worker = models.CharField(max_length=200, unique=True, help_text="host:pid of the worker process.")
    role = models.CharField(max_length=20, choices=WorkerRole.choices)
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField(db_index=True)

    objects = WorkerHeartbeatQuerySet.as_manager()

    class Meta:
        ordering = ["-beat_at"]

    def __str__(self) -> str:
        return self.worker


class ProviderRate(models.Model):
    """A collection's provider rate limits as every worker sees them (pipeline.ratelimits): the
    theoretical arrival time of the next call and of the next token (GCRA), moved by one
    compare-and-swap UPDATE per call, so the limits hold across worker pods."""

    collection = models.OneToOneField(Collection, on_delete=models.CASCADE, primary_key=True, related_name="rate")
    requests_at = models.DateTimeField(help_text="When the limit allows the next call (burst aside).")
    tokens_at = models.DateTimeField(help_text="When the limit allows the next token (burst aside).")

    def __str__(self) -> str:
        return str(self.collection_id)


class ProviderCircuitQuerySet(models.QuerySet["ProviderCircuit"]):
    """The transitions of a provider endpoint's circuit breaker, each a compare-and-swap UPDATE:
    every worker shares one row per endpoint, and the loser of a race changes nothing."""

    def endpoint(self, collection: Collection) -> ProviderCircuitQuerySet:
        return self.filter(model=collection.model, api_base=collection.api_base)

    def record_failure(self, collection: Collection, error_type: str, threshold: int, wait: timedelta) -> str:
        """Count one more consecutive transient failure of the collection's endpoint; the
        `threshold`-th opens a closed circuit for `wait`. Returns the circuit's state after."""
        now = timezone.now()
        with connections[self.db].cursor() as cur:
            cur.execute(
                """
                INSERT INTO pipeline_providercircuit AS p
                       (model, api_base, endpoint, state, consecutive_failures, reopenings, probe_owner,
                        last_error_type, last_failure_at, updated_at)
                VALUES (%s, %s, %s, 'closed', 1, 0, '', %s, %s, %s)
                ON CONFLICT (model, api_base) DO UPDATE
                   SET consecutive_failures = p.consecutive_failures + 1,
                       last_error_type = EXCLUDED.last_error_type,
                       last_failure_at = EXCLUDED.last_failure_at,
                       updated_at = EXCLUDED.updated_at
                RETURNING p.id, p.state, p.consecutive_failures
                """,
                [collection.model, collection.api_base, endpoint_label(collection), error_type, now, now],
            )
            pk, state, failures = cur.fetchone()
        if state == CircuitState.CLOSED and failures >= threshold:
            opened = self.filter(pk=pk, state=CircuitState.CLOSED).update(
                state=CircuitState.OPEN, opened_at=now, next_probe_at=now + wait, reopenings=0, updated_at=now
            )
            if opened or self.filter(pk=pk).exclude(state=CircuitState.CLOSED).exists():
                return CircuitState.OPEN
        return state

    def record_success(self, collection: Collection) -> int:
        """The endpoint answered: a run of failures is broken (a closed circuit's count restarts)."""
        return (
            self.endpoint(collection)
            .filter(state=CircuitState.CLOSED, consecutive_failures__gt=0)
            .update(consecutive_failures=0, updated_at=timezone.now())
        )

    def take_probe(self, worker: str, lease: timedelta) -> ProviderCircuit | None:
        """Win the half-open probe of one circuit whose wait is over (or whose prober died: its
        probe lease ran out). One worker wins; the others see no row and claim as usual."""
        now = timezone.now()
        with transaction.atomic(using=self.db):
            circuit = (
                self.filter(state__in=[CircuitState.OPEN, CircuitState.HALF_OPEN], next_probe_at__lte=now)
                .order_by("next_probe_at")
                .select_for_update(skip_locked=True)
                .first()
            )
            if circuit is None:
                return None
            self.filter(pk=circuit.pk).update(
                state=CircuitState.HALF_OPEN, probe_owner=worker, next_probe_at=now + lease, updated_at=now
            )
        circuit.refresh_from_db()
        return circuit

    def close(self, worker: str) -> int:
        """The worker's probe got answers: calls go through again."""
        return self.filter(state=CircuitState.HALF_OPEN, probe_owner=worker)._closed()

    def in_use(self) -> ProviderCircuitQuerySet:
        """Endpoints an unpaused collection embeds with: only their circuits are probed (with one
        such collection's settings) and only they hold work back."""
        used = Collection.objects.filter(paused=False, model=OuterRef("model"), api_base=OuterRef("api_base"))
        return self.filter(Exists(used))

    def visible_to(self, user: object) -> ProviderCircuitQuerySet:
        """Endpoints the user's collections embed or rerank with (pipeline.models.visible): another
        endpoint names other teams' models and hosts, and carries their errors."""
        if sees_all_collections(user):
            return self
        seen = Collection.objects.visible_to(user)
        embeds = seen.filter(model=OuterRef("model"), api_base=OuterRef("api_base"))
        reranks = seen.filter(rerank_model=OuterRef("model"), rerank_api_base=OuterRef("api_base"))
        return self.filter(Exists(embeds) | Exists(reranks))

    def close_unused(self) -> int:
        """Close the circuits of endpoints no unpaused collection uses (paused or deleted since it
        opened): nothing would ever probe them, and they would keep the health check failing."""
        return self.exclude(state=CircuitState.CLOSED).exclude(pk__in=self.in_use().values("pk"))._closed()

    def forget_unnamed(self) -> int:
        """Delete the closed circuits of endpoints no collection names any more (deleted or changed since):
        each kept its gauge series for ever, one per model string a tenant had tried."""
        embeds = Collection.objects.filter(model=OuterRef("model"), api_base=OuterRef("api_base"))
        reranks = Collection.objects.filter(rerank_model=OuterRef("model"), rerank_api_base=OuterRef("api_base"))
        return self.filter(state=CircuitState.CLOSED).exclude(Exists(embeds) | Exists(reranks)).delete()[0]

    def _closed(self) -> int:
        return self.update(
            state=CircuitState.CLOSED,
            consecutive_failures=0,
            reopenings=0,
            opened_at=None,
            next_probe_at=None,
            probe_owner="",
            updated_at=timezone.now(),
        )

    def reopen(self, worker: str, wait: timedelta, probed: bool = True, error_type: str = "") -> int:
        """The worker's half-open probe ends with the circuit open, the next probe after `wait`: the probe
        failed too (one more failed probe, with `error_type`), or, not `probed`, nothing was due to probe
        with (same backoff)."""
        now = timezone.now()
        failed = {"reopenings": F("reopenings") + 1} if probed else {}
        if error_type:  # what the circuit shows is the latest failure, not the one that opened it
            failed.update(last_error_type=error_type, last_failure_at=now)
        return self.filter(state=CircuitState.HALF_OPEN, probe_owner=worker).update(
            state=CircuitState.OPEN, next_probe_at=now + wait, probe_owner="", updated_at=now, **failed
        )

    def probe_now(self) -> int:
        """An operator knows the provider is back: open circuits are due for their probe now, so
        the next worker sends its probe (an answer closes it; a failure opens it again, with the
        backoff it had). A half-open circuit is already probing and is left to its prober."""
        now = timezone.now()
        # Workers probe before they claim: wake one to make it now, not at the next minute's drain.
        return wake_workers(self.filter(state=CircuitState.OPEN).update(next_probe_at=now, updated_at=now), self.db)


def endpoint_label(collection: Collection) -> str:
    """model@host[:port] of a provider endpoint: a metric label and what operators read. Never the
    api_base itself, which may carry credentials (user:password@, ?key=) in its userinfo or query."""
    if not collection.api_base:
        return collection.model
    try:
        parts = urlsplit(collection.api_base)
        host = (parts.hostname or "?") + (f":{parts.port}" if parts.port else "")
    except ValueError:
        host = "?"
    return f"{collection.model}@{host}"


class ProviderCircuit(models.Model):
    """The circuit breaker of one provider endpoint (model + api_base), shared by every worker
    (docs/architecture.md, "pipeline/models/operations.py")."""

    model = models.CharField(max_length=200)
    api_base = models.CharField(max_length=500, blank=True)
    endpoint = models.CharField(max_length=300, help_text="model@host: the metric label (no credentials).")
    state = models.CharField(max_length=12, choices=CircuitState.choices, default=CircuitState.CLOSED)
    consecutive_failures = models.PositiveIntegerField(default=0)
    reopenings = models.PositiveIntegerField(default=0, help_text="Failed probes since it opened (the backoff step).")
    opened_at = models.DateTimeField(null=True, blank=True)
    next_probe_at = models.DateTimeField(null=True, blank=True, help_text="Open: the next probe; half-open: its lease.")
    probe_owner = models.CharField(max_length=100, blank=True, help_text="The worker probing (half-open).")
    last_error_type = models.CharField(max_length=20, choices=ErrorType.choices, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField()

    objects = ProviderCircuitQuerySet.as_manager()

    class Meta:
        ordering = ["endpoint"]
        permissions = [("probe_providercircuit", "Can make an open provider circuit probe now")]
        constraints = [
            # The failure upsert's conflict target; also the claim's per-collection circuit lookup.
            models.UniqueConstraint(fields=["model", "api_base"], name="pipeline_providercircuit_unique_endpoint"),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} ({self.state})"

    @property
    def waiting(self) -> bool:
        """Open or half-open, its wait (or its probe's lease) not over: a caller makes no call meanwhile."""
        due = self.next_probe_at
        return self.state != CircuitState.CLOSED and due is not None and due > timezone.now()


class ModelCheckQuerySet(models.QuerySet["ModelCheck"]):
    def visible_to(self, user: object) -> ModelCheckQuerySet:
        """Probes of configurations one of the user's collections uses: the reason of another's names
        other teams' collections and models (as health.for_viewer hides them)."""
        if sees_all_collections(user):
            return self
        names = list(Collection.objects.visible_to(user).values_list("name", flat=True))
        return self.filter(collections__has_any_keys=names)


class ModelCheck(models.Model):
    """The latest health probe of one model configuration (model, api_base, key variable, dimensions,
    extra_params), written by pipeline.health under an advisory lock and reused for
    EMBEDPORTAL_HEALTH_MODEL_CACHE_SECONDS: /api/v1/health/ costs one provider call per interval."""

    key = models.CharField(max_length=64, help_text="sha256 of the configuration.")
    model = models.CharField(max_length=255)
    collections = models.JSONField(default=list, help_text="Active collections that use this configuration.")
    ok = models.BooleanField()
    reason = models.TextField()
    seconds = models.FloatField(help_text="The model's answer to the probe, load excluded.")
    load_seconds = models.FloatField(help_text="Loading LiteLLM and a local model's weights first (0 once loaded).")
    checked_at = models.DateTimeField()

    objects = ModelCheckQuerySet.as_manager()

    class Meta:
        ordering = ["model", "key"]
        constraints = [models.UniqueConstraint(fields=["key"], name="pipeline_modelcheck_key_unique")]

    def __str__(self) -> str:
        return f"{self.model} ({'ok' if self.ok else 'failing'})"
