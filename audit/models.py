"""The audit trail's one table: who did what to which collection, when, from where (audit.trail writes it)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from audit.choices import Via


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def past_retention(self, now: datetime | None = None) -> AuditEventQuerySet:
        """Events older than EMBEDPORTAL_AUDIT_RETENTION_DAYS (the daily pruning pass deletes them)."""
        return self.filter(at__lt=(now or timezone.now()) - timedelta(days=settings.EMBEDPORTAL_AUDIT_RETENTION_DAYS))


class AuditEvent(models.Model):
    """One state-changing action through the API, the admin or a management command. The collection
    is its name, not a key: the record outlives a deleted collection."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    via = models.CharField(max_length=8, choices=Via.choices)
    actor = models.CharField(max_length=150, blank=True, help_text="The user, or the OS user running a command.")
    token = models.CharField(max_length=100, blank=True, help_text="The API token's name, if one was used.")
    address = models.CharField(
        max_length=255, blank=True, help_text="The client address (as the throttles count it), or cli@host."
    )
    action = models.CharField(max_length=100, help_text="model.action for the API and admin, the command's name.")
    collection = models.CharField(max_length=63, blank=True)
    target = models.CharField(max_length=255, blank=True, help_text="The object acted on, if not the collection.")
    documents = models.PositiveIntegerField(null=True, blank=True, help_text="How many documents it concerned.")
    changes = models.JSONField(default=dict, blank=True, help_text="{setting: [before, after]}, secrets redacted.")

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ("-at", "-id")
        indexes = [
            # The admin's and the API's filter by collection, newest first.
            models.Index(fields=["collection", "-at"], name="audit_auditevent_collection"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor or '?'} {self.action} {self.collection}".rstrip()
