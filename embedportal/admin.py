"""The admin is the operator console; it says so instead of "Django administration"."""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from audit.hooks import Audited


class LoginForm(AdminAuthenticationForm):
    """The admin's login form, refusing a username longer than any user's before authenticating: Django's
    form sets that max_length on the input box alone, and django-axes records a failed login's username in
    255 characters (300 sent were a DataError, a 500 for anyone)."""

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        user = get_user_model()
        limit = user._meta.get_field(user.USERNAME_FIELD).max_length
        if len(username) > limit:
            raise ValidationError(f"Ensure this value has at most {limit} characters (it has {len(username)}).")
        return username


admin.site.login_form = LoginForm
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

    def response_action(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        # Django filters pk__in=<the selection> as sent: "abc" from a mangled form was a ValueError, a 500.
        for selected in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
            try:
                self.model._meta.pk.to_python(selected)
            except ValidationError:
                message = f"The selection holds {selected!r}, which is no row's id; select the rows again."
                self.message_user(request, message, messages.ERROR)
                return HttpResponseRedirect(request.get_full_path())
        return super().response_action(request, queryset)


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
