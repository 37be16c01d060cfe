"""django-q2 entry points of the audit trail."""

from __future__ import annotations

from datetime import datetime

from audit.models import AuditEvent
from embedportal.schedules import Every

SCHEDULES = (Every("audit-retention", "audit.tasks.prune_history", 24 * 60),)


def prune_history(now: datetime | None = None) -> dict:
    """Every day: audit events older than EMBEDPORTAL_AUDIT_RETENTION_DAYS."""
    return {"audit_events": AuditEvent.objects.past_retention(now).delete()[0]}
