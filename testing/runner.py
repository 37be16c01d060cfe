"""The test runner process: runs queued test runs outside the workers' slots (docs/ops-tests.md)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection

from embedportal.scrub import scrub
from pipeline.leases import log_database_error
from pipeline.models import process_name
from pipeline.wakeup import kick_workers
from testing.benchmarks.tasks import run_workload
from testing.choices import Trigger
from testing.context import fresh_workers
from testing.models import RUNNER_BEAT, RunnerHeartbeat, TestRun
from testing.reserved import wait_until
from testing.tasks import schedule_config_run
from testing.tester import EmbeddingPipelineOperationsTester, RunnerStopped, interrupted

logger = logging.getLogger(__name__)


class TestRunner:
    """Claims queued runs one at a time; `stop()` (SIGTERM) interrupts the current one at once."""

    __test__ = False  # not a pytest test class

    def __init__(self, poll_seconds: float = 1.0, report: Callable[[TestRun], None] | None = None) -> None:
        self.name = process_name()
        self.poll_seconds = poll_seconds
        self.report = report
        self.run_id: int | None = None
        self.stopping = threading.Event()
        self.stopped = "the test runner stopped"

    def serve(self, once: bool = False) -> int:
        """Execute queued runs until stopped (`once`: those queued now, then return). Returns how many ran."""
        beating = threading.Thread(target=self._beat_forever, daemon=True)
        beating.start()
        done = failures = 0
        cut_short: TestRun | None = None  # the run a database error broke off, recorded once it answers again
        try:
            RunnerHeartbeat.objects.beat(self.name)
            while not self.stopping.is_set():
                run = None
                try:
                    if failures:
                        RunnerHeartbeat.objects.beat(self.name)
                        if cut_short is not None:
                            interrupted(cut_short.pk, {}, "interrupted: the database became unreachable; run it again")
                            self._queue_again(cut_short)
                        cut_short, failures = None, 0
                    run = TestRun.objects.claim()
                    if run is None:
                        if once:
                            break
                        self.stopping.wait(self.poll_seconds)
                        continue
                    self.execute(run)
                    done += 1
                except DatabaseError as exc:
                    # A restart or failover: back off and go on, as the pipeline's workers do.
                    failures += 1
                    cut_short = run or cut_short
                    log_database_error("database error in the test runner", exc, failures)
                    reconnect()
                    self.stopping.wait(settings.EMBEDPORTAL_IDLE_SLEEP * 5)
        except RunnerStopped:
            pass
        finally:
            self.stopping.set()
            beating.join()
            reconnect()
            RunnerHeartbeat.objects.filter(runner=self.name).delete()
        return done

    def execute(self, run: TestRun) -> TestRun:
        try:
            self.run_id = run.pk  # from here on stop() raises: a claimed run is always recorded
            if self.stopping.is_set():  # the signal came while claiming
                raise RunnerStopped(self.stopped)
            RunnerHeartbeat.objects.beat(self.name, run.pk)
            self._wait_for_workers(run)
            tester = EmbeddingPipelineOperationsTester(
                **run.selection, trigger=run.trigger, stopped=lambda: self.stopped if self.stopping.is_set() else None
            )
            run = tester.execute(run, then=self._benchmark if tester.benchmark else None)
        except BaseException as exc:
            if not self.stopping.is_set():
                raise
            # The stop signal, or the error it caused by breaking a query mid-way: a new connection
            # records the interruption (a no-op if the tester recorded its own, with counts).
            reconnect()
            interrupted(run.pk, {}, f"interrupted: {self.stopped}")
            self._queue_again(run)
            raise RunnerStopped(self.stopped) from exc
        finally:
            self.run_id = None
        if self.report:
            self.report(run)
        return run

    def _benchmark(self, run: TestRun) -> str:
        """A configuration change's workload benchmark, after its scenarios: here, not in a pipeline worker's
        slot (which it held for minutes, its heartbeat stopped). Its outcome is the run's message."""
        names = list(run.selection.get("collections") or [])
        note = ("configuration changed: " + ", ".join(names))[:300]
        try:
            result = run_workload(names, note, still_wanted=lambda: bool(TestRun.objects.beat(run.pk)))
        except BaseException as exc:
            if not self.stopping.is_set():
                if not isinstance(exc, Exception):
                    raise
                logger.exception("workload benchmark of test run %s broke", run.pk)
                return scrub(f"workload benchmark not run: {type(exc).__name__}: {exc}")
            # Stopped: its process group is ended (run_workload); execute queues the run again.
            logger.warning("benchmark ended: %s", self.stopped)
            raise RunnerStopped(self.stopped) from exc
        if not result["started"]:
            return f"workload benchmark not run: {result['reason']}"
        regressed = f", {result['regressions']} regression(s)" if result["regressions"] else ""
        return f"workload benchmark: run {result['run']}{regressed}"

    def _queue_again(self, run: TestRun) -> None:
        """A configuration change's run that a stop or the database cut short is scheduled again, its
        selection kept, for the next runner: a change happens once and nobody asks for its run, so it would
        never be tested. A person's run is not: they see it interrupted and ask again if they still want it;
        nor a schedule's: its next pass comes anyway."""
        if run.trigger != Trigger.CONFIG_CHANGE:
            return
        names = list(run.selection.get("collections") or [])
        try:
            schedule_config_run(names, benchmark=bool(run.selection.get("benchmark")))
        except DatabaseError:
            logger.exception("configuration-change run %s (%s) not queued again", run.pk, ", ".join(names))

    def _wait_for_workers(self, run: TestRun) -> None:
        """A run claimed as the workers start finds no heartbeat yet: wait for one (a bounded wait, kicking them)."""

        def alive() -> bool:
            TestRun.objects.beat(run.pk)
            if fresh_workers():
                return True
            kick_workers()
            return False

        if not alive():
            logger.info("test run %s waits for a pipeline worker heartbeat", run.pk)
            wait_until(alive, settings.EMBEDPORTAL_OPS_TEST_WAIT_SECONDS)

    def _beat_forever(self) -> None:
        """Keeps the runner's row fresh through long scenarios (its own database connection)."""
        try:
            while not self.stopping.wait(RUNNER_BEAT):
                try:
                    RunnerHeartbeat.objects.beat(self.name, self.run_id)
                except DatabaseError:  # the database restarting: beat again when it answers
                    connection.close()
        except Exception:  # noqa: BLE001 -- the main loop beats too; a lost thread only ages the row
            logger.exception("test runner heartbeat stopped")
        finally:
            connection.close()

    def stop(self, signum: int = signal.SIGTERM, frame: Any = None) -> None:
        """Signal handler: the first signal interrupts the run in progress, later ones wait for that. Between
        runs it only sets the flag, so a signal landing mid-claim cannot leave a claimed run `running`."""
        if self.stopping.is_set():
            return
        self.stopped = f"the test runner stopped ({signal.Signals(signum).name})"
        self.stopping.set()
        if self.run_id is not None:
            raise RunnerStopped(self.stopped)


def reconnect() -> None:
    """After a signal broke a query, the next query opens a new connection (unless a test's transaction holds it)."""
    if not connection.in_atomic_block:
        connection.close()
