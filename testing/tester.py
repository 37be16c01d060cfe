"""Runs registered scenarios against the live system (notes: docs/ops-tests.md, "Module notes")."""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import Error, close_old_connections, connection
from django.utils import timezone

from embedportal.scrub import scrub
from embedportal.version import code_version
from testing import fingerprints
from testing.choices import Outcome, RunStatus, Trigger
from testing.context import Context
from testing.models import ScenarioTotals, TestResult, TestRun
from testing.registry import Scenario, ScenarioFailed, ScenarioSkipped, select
from testing.reserved import sweep_reserved

logger = logging.getLogger(__name__)


class RunnerStopped(BaseException):
    """The test runner was told to stop: a BaseException, so no scenario's `except Exception` swallows it."""


@dataclass
class EmbeddingPipelineOperationsTester:
    """Runs a selection of registered scenarios as one TestRun (one run at a time)."""

    # The selection, stored with the run (a queued run is executed from it: testing.runner).
    categories: Sequence[str] = ()
    scenarios: Sequence[str] = ()
    quick: bool = False
    collections: Sequence[str] = ()
    # A configuration change's run: the collections' workload benchmark after the scenarios (testing.runner).
    benchmark: bool = False
    trigger: str = Trigger.CLI
    requested_by: str = ""
    progress: Callable[[TestResult], None] | None = None
    # The test runner's stop, once signalled: its message. The signal raises RunnerStopped where the code
    # is, and inside a database commit that came back as a driver error (a scenario's error; the run went on).
    stopped: Callable[[], str | None] = lambda: None

    def __post_init__(self) -> None:
        self.categories, self.scenarios = list(self.categories), list(self.scenarios)
        self.collections = list(self.collections)
        self.selected = select(self.categories, self.scenarios, quick=self.quick)

    def start(self, status: str = RunStatus.RUNNING) -> TestRun:
        """Take the running slot, or the queued one for a test runner (RunInProgress names its holder)."""
        return TestRun.objects.start(
            status=status,
            trigger=self.trigger,
            selection={k: getattr(self, k) for k in ("categories", "scenarios", "quick", "collections", "benchmark")},
            requested_by=self.requested_by,
            code_version=code_version(),
            config_fingerprint=fingerprints.config_fingerprint(),
        )

    def run(self) -> TestRun:
        return self.execute(self.start())

    def execute(self, run: TestRun, then: Callable[[TestRun], str] | None = None) -> TestRun:
        """The scenarios, then `then` (unless the run was cancelled), whose answer is the run's message; its
        status stays the scenarios' verdict."""
        counts: Counter[str] = Counter()
        message = ""
        try:
            sweep_reserved()
            targets = self.collections or [""]
            for scenario, target in [(s, t) for s in self.selected for t in (targets if s.per_collection else [""])]:
                result = self.run_scenario(run, scenario, target)
                counts[result.outcome] += 1
                if self.progress:
                    self.progress(result)
                if stop := self.stopped():  # a stop a scenario's own error handling swallowed
                    raise RunnerStopped(stop)
                if not TestRun.objects.beat(run.pk):
                    logger.info("test run %s is no longer running (cancelled or abandoned): stopping", run.pk)
                    TestRun.objects.filter(pk=run.pk).update(counts=dict(counts))  # what ran, as its results say
                    break
            else:
                if then is not None:
                    TestRun.objects.filter(pk=run.pk).update(counts=dict(counts))  # shown while `then` runs
                    message = then(run)
        except RunnerStopped as exc:
            interrupted(run.pk, dict(counts), f"interrupted: {exc}")
            raise
        except Exception as exc:  # noqa: BLE001 -- the run records why it broke
            if stop := self.stopped():
                interrupted(run.pk, dict(counts), f"interrupted: {stop}")
                raise RunnerStopped(stop) from exc
            logger.exception("test run %s broke", run.pk)
            TestRun.objects.finish(run.pk, RunStatus.ERROR, dict(counts), scrub(f"{type(exc).__name__}: {exc}"))
        else:
            bad = counts[Outcome.FAILED] + counts[Outcome.ERROR]
            TestRun.objects.finish(run.pk, RunStatus.FAILED if bad else RunStatus.PASSED, dict(counts), message)
        run.refresh_from_db()
        return run

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
        outcome, message = attempts[-1]["outcome"], attempts[-1]["message"]
        if outcome == Outcome.PASSED and len(attempts) > 1:
            outcome = Outcome.FLAKY  # a pass on retry is evidence of flakiness, never plain green
            message = f"passed on attempt {len(attempts)}: " + "; ".join(a["message"] for a in attempts[:-1])
        result = TestResult.objects.create(
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
        ScenarioTotals.objects.add(result)
        return result

    def _attempt(self, run: TestRun, scenario: Scenario, target: str) -> tuple[str, str, dict[str, Any]]:
        ctx = Context(run, scenario, target)
        started, stopped = time.monotonic(), False
        outcome, message, measured = Outcome.PASSED, "", {}
        try:
            measured = scenario.func(ctx) or {}
            elapsed = time.monotonic() - started
            if elapsed > scenario.timeout:
                outcome, message = Outcome.FAILED, f"took {elapsed:.0f} s, over its {scenario.timeout:g} s timeout"
        except (ScenarioFailed, ScenarioSkipped) as exc:
            outcome = Outcome.FAILED if isinstance(exc, ScenarioFailed) else Outcome.SKIPPED
            message = str(exc)
        except Exception as exc:  # noqa: BLE001 -- a broken scenario is a result, not a broken run
            if stop := self.stopped():  # the stop signal broke a query: the stop, not the scenario's error
                stopped = True
                raise RunnerStopped(stop) from exc
            outcome, message = Outcome.ERROR, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
            close_old_connections()
        except RunnerStopped:
            stopped = True
            raise
        finally:
            try:
                # Stopping: no waiting for leases to end; the next run's sweep deletes what is left.
                ctx.cleanup(0 if stopped else None)
            except Exception:  # noqa: BLE001
                logger.exception("clean-up of scenario %s failed", scenario.name)
        # JSON as stored, floats to 6 decimals.
        jsonable = json.loads(json.dumps(measured, default=str), parse_float=lambda f: round(float(f), 6))
        return outcome, scrub(message), jsonable


def interrupted(run_id: int, counts: dict[str, int], message: str) -> None:
    """Record the interruption even when the signal broke the connection mid-query."""
    try:
        TestRun.objects.finish(run_id, RunStatus.ERROR, counts, message)
    except Error:
        connection.close()
        TestRun.objects.finish(run_id, RunStatus.ERROR, counts, message)
