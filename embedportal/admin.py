"""The admin is the operator console; it says so instead of "Django administration"."""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse

from audit.hooks import Audited

admin.site.site_header = "embedportal"
admin.site.site_title = "embedportal"
admin.site.index_title = "Operator console"
# "View site" opens the documentation site (/docs/, staff only): the portal has no other front page.
admin.site.site_url = "/docs/"


class WrittenBySystem:
    """Admin mixin for rows the system writes: never added; changed or deleted only where the admin says so."""

    changeable = False
    deletable = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.changeable and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.deletable and super().has_delete_permission(request, obj)


class AuditedAdmin(Audited, admin.ModelAdmin):
    """The project's ModelAdmin: additions, changes, deletions and actions write the audit trail."""


class ReadOnlyAdmin(WrittenBySystem, AuditedAdmin):
    """Viewed and deleted, never added or changed in the admin."""

    def admin_page(self, request: HttpRequest, template: str, title: str, **context: Any) -> TemplateResponse:
        """A custom page beside this model's list, in the admin's frame, for those who may view the model."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {**self.admin_site.each_context(request), "title": title, "opts": self.model._meta, **context}
        return TemplateResponse(request, template, context)


class LockoutBackend(AxesStandaloneBackend):
    """django-axes' lockout for every login through a request; one without (test client `login()`, code)
    has no client to lock out and goes on to the password check."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)
