"""What the documentation checks found: one row per page and one per coverage inventory
(notes: docs/architecture.md, "Module notes")."""

from __future__ import annotations

from typing import Any

from django.db import models, transaction
from django.utils import timezone

from docs_site.choices import Freshness, Inventory, PageKind


class DocPage(models.Model):
    path = models.CharField(
        max_length=300, unique=True, help_text="Relative to the docs folder, e.g. runbooks/alerts.md."
    )
    title = models.CharField(max_length=300)
    kind = models.CharField(max_length=12, choices=PageKind.choices)
    status = models.CharField(max_length=12, choices=Freshness.choices)
    reason = models.TextField(blank=True, help_text="What changed (stale) or since when a review is due.")
    inputs_hash = models.CharField(max_length=64, blank=True, help_text="Generated pages: the recorded inputs hash.")
    last_updated = models.DateTimeField(null=True, blank=True, help_text="When the page itself last changed.")
    source_changed_at = models.DateTimeField(null=True, blank=True, help_text="Newest change of what the page covers.")
    lag_seconds = models.FloatField(default=0, help_text="Seconds the page lags behind what it covers; 0 when fresh.")
    review_due_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField()

    class Meta:
        ordering = ["path"]
        indexes = [models.Index(fields=["status"], name="docs_site_docpage_status")]

    def __str__(self) -> str:
        return self.path


class DocCoverage(models.Model):
    kind = models.CharField(max_length=12, choices=Inventory.choices, unique=True)
    documented = models.PositiveIntegerField()
    existing = models.PositiveIntegerField()
    missing = models.JSONField(default=list, blank=True, help_text="Items that exist but are not documented.")
    checked_at = models.DateTimeField()

    class Meta:
        ordering = ["kind"]
        verbose_name_plural = "doc coverage"

    def __str__(self) -> str:
        return f"{self.kind}: {self.documented}/{self.existing}"

    @property
    def ratio(self) -> float:
        # Nothing to document counts as fully documented (an empty inventory is not a gap).
        return self.documented / self.existing if self.existing else 1.0


@transaction.atomic
def store_check(model: type[DocPage | DocCoverage], key: str, rows: dict[str, dict[str, Any]]) -> None:
    """The last check's findings, one row per key stamped with the check's time; rows for what
    the check no longer found are deleted."""
    now = timezone.now()
    for value, fields in rows.items():
        model.objects.update_or_create(**{key: value}, defaults={**fields, "checked_at": now})
    model.objects.exclude(**{f"{key}__in": list(rows)}).delete()
