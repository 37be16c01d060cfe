"""Labels that Django derives from a member's name (`PASSED = "passed"` is "Passed") are left out."""

from __future__ import annotations

from django.db import models


class Trigger(models.TextChoices):
    """Who started a run: which scheduler, or which way a person asked (the metrics' `trigger`)."""

    API = "api", "API request"
    SCHEDULE_DJANGO_Q = "schedule-django-q", "django-q2 schedule"
    SCHEDULE_ARGO = "schedule-argo", "Argo CronWorkflow"
    CONFIG_CHANGE = "config-change", "Configuration change"
    CLI = "cli", "Command line"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued (waiting for a test runner)"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error", "Error (the run broke, was cancelled, interrupted or abandoned)"


class Outcome(models.TextChoices):
    PASSED = "passed"
    FAILED = "failed", "Failed (the system did not behave)"
    ERROR = "error", "Error (the scenario itself broke)"
    SKIPPED = "skipped"
    FLAKY = "flaky", "Flaky (passed only after a retry)"


class Category(models.TextChoices):
    NORMAL = "normal"
    EDGE = "edge", "Edge cases"
    FAILURE = "failure", "Failure conditions"
    INTEGRATION = "integration"
    REGRESSION = "regression", "Regression (retrieval quality)"
    LOAD = "load"


class Component(models.TextChoices):
    """The critical paths of the coverage catalogue (rows of the component x condition matrix)."""

    ENQUEUE = "enqueue"
    CLAIM = "claim"
    CHUNK = "chunk"
    EMBED = "embed"
    STORE = "store"
    SEARCH = "search"
    REPROCESS = "reprocess"
    STALENESS = "staleness"
    METRICS = "metrics"
    HEALTH = "health"


class Condition(models.TextChoices):
    NORMAL = "normal"
    EDGE = "edge"
    FAILURE = "failure"


class BenchmarkSuite(models.TextChoices):
    QUICK = "quick", "Quick (CI, developers)"
    FULL = "full", "Full (nightly, releases)"
    # A changed collection's own workload (benchmark collection:<name>), compared with its own history.
    WORKLOAD = "workload", "A collection's workload (configuration changes)"


class BenchmarkTrigger(models.TextChoices):
    CLI = "cli", "Command line"
    CONFIG_CHANGE = "config_change", "Configuration change"
    SCHEDULE = "schedule", "Nightly schedule"
    RELEASE = "release"
    CI = "ci", "CI"
