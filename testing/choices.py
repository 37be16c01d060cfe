from __future__ import annotations

from django.db import models


class Trigger(models.TextChoices):
    API = "api", "API request"
    SCHEDULE = "schedule", "Schedule"
    CONFIG_CHANGE = "config_change", "Configuration change"
    CLI = "cli", "Command line"


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"
    ERROR = "error", "Error (the run itself broke or was abandoned)"


class Outcome(models.TextChoices):
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed (the system did not behave)"
    ERROR = "error", "Error (the scenario itself broke)"
    SKIPPED = "skipped", "Skipped"
    FLAKY = "flaky", "Flaky (passed only after a retry)"


class Category(models.TextChoices):
    NORMAL = "normal", "Normal"
    EDGE = "edge", "Edge cases"
    FAILURE = "failure", "Failure conditions"
    INTEGRATION = "integration", "Integration"
    REGRESSION = "regression", "Regression (retrieval quality)"
    LOAD = "load", "Load"


class Component(models.TextChoices):
    """The critical paths of the coverage catalogue (rows of the component x condition matrix)."""

    ENQUEUE = "enqueue", "Enqueue"
    CLAIM = "claim", "Claim"
    CHUNK = "chunk", "Chunk"
    EMBED = "embed", "Embed"
    STORE = "store", "Store"
    SEARCH = "search", "Search"
    REPROCESS = "reprocess", "Reprocess"
    STALENESS = "staleness", "Staleness"
    METRICS = "metrics", "Metrics"
    HEALTH = "health", "Health"


class Condition(models.TextChoices):
    NORMAL = "normal", "Normal"
    EDGE = "edge", "Edge"
    FAILURE = "failure", "Failure"


class BenchmarkSuite(models.TextChoices):
    QUICK = "quick", "Quick (CI, configuration changes)"
    FULL = "full", "Full (nightly, releases)"


class BenchmarkTrigger(models.TextChoices):
    CLI = "cli", "Command line"
    CONFIG_CHANGE = "config_change", "Configuration change"
    SCHEDULE = "schedule", "Nightly schedule"
    RELEASE = "release", "Release"
    CI = "ci", "CI"
