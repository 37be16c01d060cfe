from __future__ import annotations

from django.db import models


class PageKind(models.TextChoices):
    GENERATED = "generated", "Generated from the running system"
    RUNBOOK = "runbook", "Runbook"
    GUIDE = "guide", "Guide"


class Freshness(models.TextChoices):
    """A generated page is fresh while its inputs hash to the recorded value; a hand-written
    page is stale when something it covers changed after it was last updated, and review due
    once its review interval has passed."""

    FRESH = "fresh", "Fresh"
    STALE = "stale", "Stale"
    REVIEW_DUE = "review_due", "Review due"


class Inventory(models.TextChoices):
    """What `documentation_coverage_embedding_pipeline_operations{kind}` counts."""

    SETTINGS = "settings", "Settings"
    ENDPOINTS = "endpoints", "API endpoints"
    METRICS = "metrics", "Metrics"
    ALERTS = "alerts", "Alert rules"
    COMMANDS = "commands", "Management commands"
