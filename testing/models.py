"""Operations test runs against the live system, their results and runners, and benchmark runs."""

from __future__ import annotations

import bisect
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import IntegrityError, connections, models, transaction
from django.db.models import Q
from django.utils import timezone

from pipeline.models import sees_all_collections
from testing.choices import BenchmarkSuite, BenchmarkTrigger, Category, Component, Outcome, RunStatus, Trigger


class RunInProgress(Exception):
    """Another run holds the slot asked for: the one running run, or the one queued run."""

    def __init__(self, run: TestRun | None) -> None:
        self.run = run
        super().__init__(f"test run {run.pk} ({run.trigger}) is {run.status}" if run else "a test run is running")


ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)


class TestRunQuerySet(models.QuerySet["TestRun"]):
    def start(self, status: str = RunStatus.RUNNING, **fields: Any) -> TestRun:
        """A running run (a command runs it itself) or a queued one (for a test runner); the partial unique
        indexes testing_testrun_one_running/_one_queued refuse a second of either, so racers never overlap."""
        self.abandon_stale()
        now = timezone.now()
        try:
            with transaction.atomic():
                return self.create(status=status, started_at=now, heartbeat_at=now, **fields)
        except IntegrityError:
            raise RunInProgress(self.filter(status=status).first()) from None

    def claim(self) -> TestRun | None:
        """queued -> running for a test runner (compare-and-swap); None while a run is running."""
        self.abandon_stale()
        queued = self.filter(status=RunStatus.QUEUED).values_list("pk", flat=True).first()
        now = timezone.now()
        try:
            with transaction.atomic():
                taken = self.filter(pk=queued, status=RunStatus.QUEUED).update(
                    status=RunStatus.RUNNING, started_at=now, heartbeat_at=now
                )
        except IntegrityError:  # a run started by run_ops_tests holds the running slot
            return None
        return self.get(pk=queued) if taken else None

    def beat(self, run_id: int) -> int:
        """0 once the run is no longer running (cancelled or abandoned): its executor stops."""
        return self.filter(pk=run_id, status=RunStatus.RUNNING).update(heartbeat_at=timezone.now())

    def finish(self, run_id: int, status: str, counts: dict[str, int], message: str = "") -> int:
        """running -> passed/failed/error (compare-and-swap: an abandoned run stays abandoned)."""
        started = self.filter(pk=run_id).values_list("started_at", flat=True).first()
        now = timezone.now()
        duration = (now - started).total_seconds() if started else None
        return self.filter(pk=run_id, status=RunStatus.RUNNING).update(
            status=status, finished_at=now, counts=counts, duration_seconds=duration, message=message[:2000]
        )

    def cancel(self, by: str) -> int:
        """queued/running -> error: a running one stops after its current scenario (its beat finds it ended)."""
        return self.filter(status__in=ACTIVE).end(f"cancelled by {by}")

    def end(self, message: str) -> int:
        return self.update(status=RunStatus.ERROR, finished_at=timezone.now(), message=message[:2000])

    def abandon_stale(self) -> int:
        """Free the slot of a run silent for EMBEDPORTAL_OPS_TEST_ABANDON_SECONDS (queued: while no runner lives)."""
        cutoff = timezone.now() - timedelta(seconds=settings.EMBEDPORTAL_OPS_TEST_ABANDON_SECONDS)
        stale = self.filter(heartbeat_at__lt=cutoff)
        abandoned = stale.filter(status=RunStatus.RUNNING).end("abandoned: its process stopped reporting")
        if not RunnerHeartbeat.objects.alive().exists():
            abandoned += stale.filter(status=RunStatus.QUEUED).end(f"abandoned: {NO_RUNNER}")
        return abandoned


# What a queued run says while nothing picks it up (the API, the admin, an abandoned run).
NO_RUNNER = "no test runner is running: start `manage.py run_test_runner`"
# A runner beats every RUNNER_BEAT seconds (a thread, through long scenarios too); older rows are gone.
RUNNER_BEAT = 10
RUNNER_MAX_AGE = timedelta(seconds=6 * RUNNER_BEAT)


class RunnerHeartbeatQuerySet(models.QuerySet["RunnerHeartbeat"]):
    def beat(self, runner: str, run_id: int | None = None) -> None:
        now = timezone.now()
        # A killed runner never removes its row: the live ones clear rows too old to be alive.
        self.filter(beat_at__lt=now - RUNNER_MAX_AGE).exclude(runner=runner).delete()
        self.update_or_create(
            runner=runner,
            defaults={"beat_at": now, "run_id": run_id},
            create_defaults={"beat_at": now, "started_at": now, "run_id": run_id},
        )

    def alive(self) -> RunnerHeartbeatQuerySet:
        return self.filter(beat_at__gte=timezone.now() - RUNNER_MAX_AGE)


class RunnerHeartbeat(models.Model):
    """A test runner process (`run_test_runner`) was alive at `beat_at`: a queued run will be picked up."""

    runner = models.CharField(max_length=200, unique=True, help_text="host:pid of the runner process.")
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField()
    run_id = models.IntegerField(null=True, blank=True, help_text="The run it executes now, if any.")

    objects = RunnerHeartbeatQuerySet.as_manager()

    class Meta:
        ordering = ["-beat_at"]
        verbose_name = "test runner"

    def __str__(self) -> str:
        return self.runner


def queued_note(run: TestRun) -> str:
    """Why a queued run has not started: its runner is busy, or none is alive."""
    runner = RunnerHeartbeat.objects.alive().first()
    if runner is None:
        return f"queued: {NO_RUNNER}"
    busy = f" (it runs test run {runner.run_id})" if runner.run_id else ""
    return f"queued: test runner {runner.runner} will pick it up{busy}"


class TestRun(models.Model):
    """One run of a selection of scenarios against this deployment."""

    __test__ = False  # a model, not a pytest test class

    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    selection = models.JSONField(
        default=dict, blank=True, help_text="Categories, scenarios and target collections asked for."
    )
    requested_by = models.CharField(max_length=150, blank=True)
    code_version = models.CharField(max_length=64, blank=True)
    config_fingerprint = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.RUNNING)
    started_at = models.DateTimeField(help_text="When it started running (while queued: when it was queued).")
    heartbeat_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True, help_text="Results by outcome.")
    message = models.TextField(blank=True)

    objects = TestRunQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]
        permissions = [("run_testrun", "Can run operations tests")]
        constraints = [
            models.UniqueConstraint(
                fields=["status"], condition=Q(status="running"), name="testing_testrun_one_running"
            ),
            # One run waits for a runner at a time (a test runner claims it: TestRunQuerySet.claim).
            models.UniqueConstraint(fields=["status"], condition=Q(status="queued"), name="testing_testrun_one_queued"),
        ]
        indexes = [
            # Read by the metrics collector (last run per trigger) and the scheduled-run alert.
            models.Index(fields=["trigger", "-started_at"], name="testing_testrun_trigger"),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.trigger}, {self.status})"


class TestResult(models.Model):
    """One scenario's outcome in a run (all its attempts)."""

    __test__ = False  # a model, not a pytest test class

    run = models.ForeignKey(TestRun, on_delete=models.CASCADE, related_name="results")
    scenario = models.CharField(max_length=100)
    category = models.CharField(max_length=12, choices=Category.choices)
    component = models.CharField(max_length=12, choices=Component.choices)
    target = models.CharField(
        max_length=63, blank=True, help_text="The collection a regression scenario measured, if any."
    )
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    attempts = models.PositiveSmallIntegerField(default=1)
    started_at = models.DateTimeField()
    duration_seconds = models.FloatField()
    message = models.TextField(blank=True, help_text="Why it failed, secrets scrubbed.")
    details = models.JSONField(default=dict, blank=True, help_text="Measurements and every attempt's outcome.")

    class Meta:
        ordering = ["run", "id"]
        indexes = [
            # Scenario history, flaky detection and regression baselines scan one scenario by time.
            models.Index(fields=["scenario", "-started_at"], name="testing_testresult_history"),
            models.Index(fields=["started_at"], name="testing_testresult_started"),
        ]

    def __str__(self) -> str:
        return f"{self.scenario}: {self.outcome}"


# Seconds an operations test scenario took: the buckets of test_duration_seconds.
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

_ADD_TOTALS_SQL = """
INSERT INTO testing_scenariototals AS t
       (scenario, outcome, category, results, duration_seconds, duration_buckets, last_at)
VALUES (%(scenario)s, %(outcome)s, %(category)s, 1, %(duration_seconds)s, %(buckets)s::bigint[], %(started_at)s)
ON CONFLICT (scenario, outcome) DO UPDATE
   SET category = EXCLUDED.category,
       results = t.results + 1,
       duration_seconds = t.duration_seconds + EXCLUDED.duration_seconds,
       duration_buckets[%(bucket)s] = t.duration_buckets[%(bucket)s] + 1,
       last_at = greatest(t.last_at, EXCLUDED.last_at)
"""
# When a scenario last passed, failed and passed only on a retry on one code version and config, per
# target collection (a regression scenario passing on one collection and failing on another is no flake).
_ADD_VERSION_SQL = """
INSERT INTO testing_scenarioversion AS v (scenario, target, code_version, config_fingerprint, good_at, bad_at, flaky_at)
VALUES (%(scenario)s, %(target)s, %(code)s, %(config)s, %(good)s, %(bad)s, %(flaky)s)
ON CONFLICT (scenario, target, code_version, config_fingerprint) DO UPDATE
   SET good_at = greatest(v.good_at, EXCLUDED.good_at),
       bad_at = greatest(v.bad_at, EXCLUDED.bad_at),
       flaky_at = greatest(v.flaky_at, EXCLUDED.flaky_at)
"""
GOOD = (Outcome.PASSED, Outcome.FLAKY)


class ScenarioTotalsQuerySet(models.QuerySet["ScenarioTotals"]):
    def add(self, result: TestResult) -> None:
        """Count one result and note its outcome on its code version (upserts: no read-modify-write)."""
        bucket = bisect.bisect_left(DURATION_BUCKETS, result.duration_seconds)
        buckets = [0] * (len(DURATION_BUCKETS) + 1)
        buckets[bucket] = 1
        at, good = result.started_at, result.outcome in GOOD
        with connections[self.db].cursor() as cur:
            # The result's own fields fill the named parameters they share a name with.
            cur.execute(_ADD_TOTALS_SQL, {**vars(result), "buckets": buckets, "bucket": bucket + 1})
            if result.outcome != Outcome.SKIPPED:
                version = {"code": result.run.code_version, "config": result.run.config_fingerprint}
                outcome = {"good": at if good else None, "bad": None if good else at}
                flaky = at if result.outcome == Outcome.FLAKY else None
                named = {"scenario": result.scenario, "target": result.target}
                cur.execute(_ADD_VERSION_SQL, {**named, **version, **outcome, "flaky": flaky})

    def ran_since(self, since: datetime) -> set[str]:
        """Scenarios with a result other than skipped since then (the coverage matrix)."""
        return set(self.filter(last_at__gte=since).exclude(outcome=Outcome.SKIPPED).values_list("scenario", flat=True))


class ScenarioTotals(models.Model):
    """Every result a scenario ever had, by outcome: the /metrics counters, kept when old runs are pruned."""

    scenario = models.CharField(max_length=100)
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    category = models.CharField(max_length=12, choices=Category.choices)
    results = models.BigIntegerField()
    duration_seconds = models.FloatField(help_text="Sum over the results.")
    duration_buckets = ArrayField(
        models.BigIntegerField(), help_text="Plain counts per DURATION_BUCKETS bound, +Inf last."
    )
    last_at = models.DateTimeField(help_text="When the latest of these results started.")

    objects = ScenarioTotalsQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "scenario totals"
        constraints = [models.UniqueConstraint(fields=["scenario", "outcome"], name="testing_scenariototals_unique")]

    def __str__(self) -> str:
        return f"{self.scenario} {self.outcome}: {self.results}"


class ScenarioVersion(models.Model):
    """When a scenario last passed, failed and was flaky on one version: flaky detection reads these few rows."""

    scenario = models.CharField(max_length=100)
    target = models.CharField(max_length=63, blank=True, db_default="", help_text="As TestResult.target.")
    code_version = models.CharField(max_length=64)
    config_fingerprint = models.CharField(max_length=64)
    good_at = models.DateTimeField(null=True)
    bad_at = models.DateTimeField(null=True)
    flaky_at = models.DateTimeField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["scenario", "target", "code_version", "config_fingerprint"],
                name="testing_scenarioversion_target_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.scenario} on {self.code_version[:12]}"


class ConfigSnapshot(models.Model):
    """The settings fingerprint seen at the last start-up (migrate); a change queues a regression run."""

    key = models.CharField(max_length=32, primary_key=True)
    fingerprint = models.CharField(max_length=64)
    recorded_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.key}: {self.fingerprint[:12]}"


class BenchmarkRunQuerySet(models.QuerySet["BenchmarkRun"]):
    def readable_by(self, user: Any) -> BenchmarkRunQuerySet:
        """A workload run's figures are its collections' (benchmark collection:<name>), several teams' at
        once: platform operators only (pipeline.models.visible)."""
        return self if sees_all_collections(user) else self.exclude(suite=BenchmarkSuite.WORKLOAD)


class BenchmarkRun(models.Model):
    """One `manage.py benchmark` run: figures as repeated samples, compared with the same machine's history."""

    suite = models.CharField(max_length=8, choices=BenchmarkSuite.choices)
    trigger = models.CharField(max_length=16, choices=BenchmarkTrigger.choices, default=BenchmarkTrigger.CLI)
    note = models.CharField(max_length=300, blank=True, help_text="What asked for it (e.g. the collection changed).")
    started_at = models.DateTimeField()
    duration_seconds = models.FloatField()
    code_version = models.CharField(max_length=64, blank=True)
    config_fingerprint = models.CharField(max_length=64, blank=True)
    machine_fingerprint = models.CharField(max_length=64, help_text="Only runs on the same machine are compared.")
    machine = models.JSONField(default=dict, help_text="CPU model, cores, memory, Python and PostgreSQL versions.")
    # {benchmark: {figure: {"samples": [...], "median": x, "better": "higher" | "lower", "unit": "docs/s"}}};
    # per-stage figures also carry "informational": true, "stage" and "quantile" (testing.benchmarks.stages).
    results = models.JSONField(default=dict)
    # {benchmark: {figure: {"verdict": "regression" | "improvement" | "same" | "insufficient_data"
    #                                  | "informational", ...}}}
    comparison = models.JSONField(default=dict)
    regressions = models.PositiveIntegerField(default=0, help_text="Figures flagged as regressions.")

    objects = BenchmarkRunQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]
        get_latest_by = "started_at"
        indexes = [
            # The history a run is compared with (testing.benchmarks.regression.history).
            models.Index(fields=["machine_fingerprint", "suite", "started_at"], name="testing_benchrun_history"),
        ]

    def __str__(self) -> str:
        return f"{self.suite} benchmark at {self.started_at:%Y-%m-%d %H:%M}"
