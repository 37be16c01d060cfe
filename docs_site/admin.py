"""Documentation pages and their freshness in the operator console, and the status page."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse

from docs_site.choices import Freshness
from docs_site.models import DocCoverage, DocPage
from docs_site.tasks import record_checks
from embedportal.admin import ReadOnlyAdmin


@admin.register(DocPage)
class DocPageAdmin(ReadOnlyAdmin):
    deletable = False  # rows are what the checks found; the pages live in docs/
    list_display = ("path", "title", "kind", "status", "lag_seconds", "last_updated", "review_due_at", "checked_at")
    list_filter = ("status", "kind")
    search_fields = ("path", "title", "reason")
    change_list_template = "admin/docs_site/docpage/change_list.html"
    actions = ("recheck",)

    @admin.action(description="Check the documentation again", permissions=["view"])
    def recheck(self, request: HttpRequest, queryset: QuerySet[DocPage] | None = None) -> None:
        statuses = record_checks()
        stale = sum(1 for s in statuses if s.status == Freshness.STALE)
        self.message_user(request, f"Checked {len(statuses)} page(s): {stale} stale.", messages.SUCCESS)

    def get_urls(self) -> list[URLPattern]:
        status = path("status/", self.admin_site.admin_view(self.status_view), name="docs_site_status")
        return [status, *super().get_urls()]

    def status_view(self, request: HttpRequest) -> HttpResponse:
        # admin_page refuses whoever may not view the pages; so does the check.
        if request.method == "POST" and self.has_view_permission(request):
            self.recheck(request)
            return HttpResponseRedirect(reverse("admin:docs_site_status"))
        rows = list(DocPage.objects.all())
        return self.admin_page(
            request,
            "admin/docs_site/status.html",
            "Documentation status",
            pages=rows,
            coverage=list(DocCoverage.objects.all()),
            counts={s.label: sum(1 for r in rows if r.status == s) for s in Freshness},
            checked_at=min((r.checked_at for r in rows), default=None),
        )


@admin.register(DocCoverage)
class DocCoverageAdmin(ReadOnlyAdmin):
    list_display = ("kind", "documented", "existing", "checked_at")
