from __future__ import annotations

from django.contrib import admin

from audit.models import AuditEvent
from embedportal.admin import ReadOnlyAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit trail, read-only: no one edits or deletes it here (the retention pass prunes it)."""

    deletable = False
    list_display = ("at", "actor", "token", "via", "action", "collection", "target", "documents", "address")
    list_filter = ("via", "action", "collection", "actor", "at")
    search_fields = ("actor", "collection", "action", "target", "token")
    date_hierarchy = "at"
    show_full_result_count = False
