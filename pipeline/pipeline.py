"""EmbeddingIngestionPipeline, the worker: claim a batch, process it (pipeline.batches), keep its
leases and heartbeat (pipeline.leases), ride out database outages (pipeline.failures)."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.db.models import Min
from django.utils import timezone

from embedportal.shutdown import SignalStop
from pipeline import leases, metrics, waits
from pipeline.backfill import finish_ready
from pipeline.batches import BatchProcessing
from pipeline.choices import DocumentStatus, WorkerRole
from pipeline.embedding import OUTAGE, PROBE_TEXT, PipelineError, embed_texts
from pipeline.leases import Report
from pipeline.models import Collection, Document, ProviderCircuit, WorkerHeartbeat
from pipeline.waits import RetryPolicy

logger = logging.getLogger(__name__)


class EmbeddingIngestionPipeline(BatchProcessing):
    """One worker's view of the pipeline. Many may run at once, in any process or host."""

    def __init__(
        self,
        worker_id: str | None = None,
        claim_batch: int | None = None,
        lease_seconds: int | None = None,
        role: str = WorkerRole.WORKER,
        retry: RetryPolicy | None = None,
        recorder: Any = metrics,
    ) -> None:
        """`recorder`: pipeline.metrics, or a stand-in recording nothing (benchmark_metrics)."""
        self.worker_id = worker_id or leases.new_worker_id()
        self.claim_batch = claim_batch or settings.EMBEDPORTAL_CLAIM_BATCH
        self.lease = timedelta(seconds=lease_seconds or settings.EMBEDPORTAL_LEASE_SECONDS)
        self.role = role
        self.retry = retry or RetryPolicy.from_settings()
        self.metrics = recorder
        self._last_beat = -leases.HEARTBEAT_EVERY
        # The current batch's claim: (seconds the claim took, when it was claimed), for BatchTiming.
        self._claim: tuple[float, datetime] = (0.0, timezone.now())
        # While drain() runs (EMBEDPORTAL_STORAGE_OVERLAP): batches are stored on this thread.
        self._storage: leases.StorageStage | None = None

    def run_once(self) -> Report:
        """Claim one batch and process it (claimed == 0: the queue is empty): of the next collection with
        work, round-robin. A circuit due for its half-open probe is probed first."""
        self._heartbeat()
        # The probe's lease covers its call: at the document lease alone (30 s), a provider that hangs until
        # the call's timeout (60 s) had its probe taken over by another worker every 30 s, each reopening lost.
        probe_lease = self.lease + timedelta(seconds=settings.EMBEDPORTAL_EMBED_TIMEOUT)
        if (probe := ProviderCircuit.objects.take_probe(self.worker_id, probe_lease)) is not None:
            self._probe(probe)
        t0 = time.perf_counter()
        docs = Document.objects.claim(self.worker_id, self.claim_batch, self.lease)
        self._claim = (time.perf_counter() - t0, timezone.now())
        self.metrics.observe_claim(self._claim[0], [(self._claim[1] - d.enqueued_at).total_seconds() for d in docs])
        report = Report(claimed=len(docs))
        if not docs:
            finish_ready()  # a backfill whose index build died with its worker (pipeline.backfill)
            return report
        by_collection: dict[int, list[Document]] = defaultdict(list)
        for doc in docs:
            by_collection[doc.collection_id].append(doc)
        keeper = leases.LeaseKeeper(self.worker_id, [d.pk for d in docs], self.lease, self.role)
        try:
            for group in by_collection.values():
                self._process(group[0].collection, group, report)
        finally:
            # The leases are kept until the batch is stored, which may be after this returns.
            self._then(keeper.stop)
        report.batches = 1
        return report

    def _probe(self, probe: ProviderCircuit) -> None:
        """The half-open probe: one call of a fixed text, never a document. An answer closes the circuit;
        another outage error opens it again, for longer. A document probe let one document the provider
        refuses with a 500 keep its circuit open for every collection on it, at each of its retries."""
        collection = Collection.objects.filter(paused=False, model=probe.model, api_base=probe.api_base).first()
        if collection is None:  # paused or deleted since: the heartbeat closes its circuit
            ProviderCircuit.objects.reopen(self.worker_id, waits.circuit_wait(probe.reopenings), probed=False)
            return
        try:
            embed_texts(collection, [PROBE_TEXT])
        except PipelineError as exc:
            if exc.error_type in OUTAGE:
                wait = waits.circuit_wait(probe.reopenings + 1)
                if ProviderCircuit.objects.reopen(self.worker_id, wait, error_type=exc.error_type):
                    logger.warning(
                        "provider %s still failing (%s): circuit open again, next probe in %.0f s",
                        probe.endpoint,
                        exc.error_type,
                        wait.total_seconds(),
                    )
                else:  # closed by an operator or another probe meanwhile: this answer is old news
                    logger.warning("provider %s failed a probe (%s) no longer in hand", probe.endpoint, exc.error_type)
                return
        # It answered (an answer the documents would fail on, too: they fail alone, not as an outage).
        ProviderCircuit.objects.close(self.worker_id)
        logger.warning("provider %s answers again: circuit closed", probe.endpoint)

    def drain(self, max_seconds: float | None = None, stop: Callable[[], bool] | None = None) -> Report:
        """Process batches until the queue is empty, time is up, or `stop()`; all are stored by return."""
        reports = []
        deadline = time.monotonic() + max_seconds if max_seconds else None
        # Inside a caller's transaction the storage thread's own connection could not see the claimed
        # rows, and the caller expects our writes in its transaction: store inline then.
        overlap = settings.EMBEDPORTAL_STORAGE_OVERLAP and not connection.in_atomic_block
        self._storage = leases.StorageStage() if overlap else None
        try:
            while not (stop and stop()) and not (deadline and time.monotonic() > deadline):
                try:
                    report = self.run_once()
                except DatabaseError:
                    if self._storage is None or not self._storage.pending:
                        raise
                    # The database went away while the previous batch is stored: its retries ride it out.
                    self._storage.barrier()
                    report = self.run_once()
                reports.append(report)
                if report.claimed == 0 and not (deadline and self._await_abandoned_lease(deadline)):
                    break
        finally:
            stage, self._storage = self._storage, None
            if stage is not None:
                stage.close()
        total = Report()
        for report in reports:  # complete only now: the storage thread adds to them
            total.add(report)
        return total

    def _await_abandoned_lease(self, deadline: float) -> bool:
        """Wait for a lease whose renewals stopped (a dead worker's) to expire before our deadline, so its
        batch is taken within the lease, not at the next drain; False when there is none."""
        now = timezone.now()
        expiry = (
            Document.objects.filter(
                status=DocumentStatus.PROCESSING, lease_expires_at__gt=now, lease_expires_at__lt=now + self.lease / 2
            )
            .exclude(lease_owner=self.worker_id)
            .aggregate(first=Min("lease_expires_at"))["first"]
        )
        wait = None if expiry is None else (expiry - now).total_seconds() + 0.1
        if wait is None or time.monotonic() + wait > deadline:
            return False
        time.sleep(wait)
        return True

    def _then(self, job: Callable[[], None]) -> None:
        """Run `job` after the current batch's storage: now, or queued behind it on the storage thread."""
        if self._storage is None:
            job()
        else:
            self._storage.submit(job)

    def run_forever(self, stop: SignalStop | threading.Event) -> Report:
        total = Report()
        failures = 0
        while not stop.is_set():
            try:
                if failures:
                    # Back from a database error: give back the batch it cut short now, not at lease expiry.
                    released = Document.objects.release(self.worker_id)
                    logger.warning(
                        "database reachable again after %d retr%s; worker %s gave back %d document(s)",
                        failures - 1,
                        "y" if failures == 2 else "ies",
                        self.worker_id,
                        released,
                    )
                    failures = 0
                report = self.drain(stop=stop.is_set)
            except DatabaseError as exc:
                # The database went away (restart, failover): back off, reconnect, go on.
                failures += 1
                leases.log_database_error(f"database error in worker {self.worker_id}", exc, failures)
                close_old_connections()
                stop.wait(settings.EMBEDPORTAL_IDLE_SLEEP * 5)
                continue
            total.add(report)
            if report.claimed == 0:
                stop.wait(settings.EMBEDPORTAL_IDLE_SLEEP)
        self._stop()
        return total

    def _stop(self) -> None:
        """A clean stop gives back the worker's leases and removes its heartbeat: it is not alive."""
        try:
            Document.objects.release(self.worker_id)
            WorkerHeartbeat.objects.stop()
        except DatabaseError as exc:
            logger.warning(
                "worker %s stopping without the database (%s): its leases return to the queue when they "
                "expire (%.0f s)",
                self.worker_id,
                leases.first_line(exc),
                self.lease.total_seconds(),
            )

    def _heartbeat(self) -> None:
        # The queue health check reads these rows; one per HEARTBEAT_EVERY seconds, not per batch.
        if time.monotonic() - self._last_beat >= leases.HEARTBEAT_EVERY:
            WorkerHeartbeat.objects.beat(self.role)
            self._last_beat = time.monotonic()
