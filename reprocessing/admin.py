"""The operator console for failed documents: filter by type, age and state; retry, dead-letter, resolve."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from embedportal.admin import ReadOnlyAdmin
from pipeline.access import TeamCollectionFilter, TeamScoped
from pipeline.admin_state import holds
from reprocessing import failures
from reprocessing.choices import Resolution
from reprocessing.models import FailedDocument

# Age filter choices: (parameter value, label, lower bound, upper bound) since the first failure.
AGES = (
    ("1h", "Under 1 hour", None, timedelta(hours=1)),
    ("1d", "1 hour to 1 day", timedelta(hours=1), timedelta(days=1)),
    ("7d", "1 to 7 days", timedelta(days=1), timedelta(days=7)),
    ("older", "Over 7 days", timedelta(days=7), None),
)


class AgeFilter(admin.SimpleListFilter):
    title = "age"
    parameter_name = "age"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, label) for value, label, _, _ in AGES]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        now = timezone.now()
        for value, _, younger_than, older_than in AGES:
            if self.value() == value:
                if younger_than is not None:
                    queryset = queryset.filter(first_failed_at__lte=now - younger_than)
                if older_than is not None:
                    queryset = queryset.filter(first_failed_at__gt=now - older_than)
        return queryset


@admin.register(FailedDocument)
class FailedDocumentAdmin(TeamScoped, ReadOnlyAdmin):
    collection_path = "document__collection"

    list_display = (
        "document",
        "collection",
        "error_type",
        "stage",
        "state",
        "attempts",
        "first_failed_at",
        "last_failed_at",
        "next_retry_at",
    )
    list_filter = ("state", "error_type", "stage", AgeFilter, ("document__collection", TeamCollectionFilter))
    search_fields = ("document__external_id", "message")
    list_select_related = ("document", "document__collection")
    show_full_result_count = False  # history grows without bound: skip COUNT(*)
    date_hierarchy = "first_failed_at"
    actions = ("retry_now", "dead_letter", "resolve")

    @admin.display(description="collection", ordering="document__collection__name")
    def collection(self, obj: FailedDocument) -> str:
        return obj.document.collection.name

    has_retry_permission = holds("reprocessing.retry_faileddocument")
    has_resolve_permission = holds("reprocessing.resolve_faileddocument")

    @admin.action(description="Retry now", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        # The selection is counted first: a requeued row may no longer match the list's filter (dead-lettered).
        selected, retried = queryset.count(), sum(failures.retry(queryset).values())
        self.message_user(
            request,
            f"Requeued {retried} document(s); {selected - retried} skipped (requeued or resolved already).",
            messages.SUCCESS if retried else messages.WARNING,
        )

    @admin.action(description="Dead-letter (stop automatic retries)", permissions=["resolve"])
    def dead_letter(self, request: HttpRequest, queryset: QuerySet) -> None:
        n = queryset.dead_letter()
        self.message_user(request, f"Dead-lettered {n} failure(s); only scheduled ones can be.", messages.SUCCESS)

    @admin.action(description="Resolve (close by hand)", permissions=["resolve"])
    def resolve(self, request: HttpRequest, queryset: QuerySet) -> None:
        n = queryset.resolve(Resolution.OPERATOR, timezone.now())
        self.message_user(request, f"Resolved {n} failure(s).", messages.SUCCESS)
