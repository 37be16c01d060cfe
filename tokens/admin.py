"""API tokens in the admin: listed by their clear prefix, created with the secret shown once, revoked by an action;
each creation and revocation is audited. Only a superuser creates a token for another user: anyone else's
token would act as that user, with that user's permissions; nor lists or revokes another's."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.http import HttpRequest

from embedportal.admin import AuditedAdmin
from embedportal.printable import unsafe_character
from tokens.models import ApiToken


class NewTokenForm(forms.ModelForm):
    days = forms.IntegerField(
        min_value=1,
        max_value=settings.EMBEDPORTAL_TOKEN_MAX_EXPIRY_DAYS,
        initial=settings.EMBEDPORTAL_TOKEN_EXPIRY_DAYS,
        help_text="Days the token is valid (at most EMBEDPORTAL_TOKEN_MAX_EXPIRY_DAYS).",
        error_messages={"max_value": "at most %(limit_value)s days (EMBEDPORTAL_TOKEN_MAX_EXPIRY_DAYS)"},
    )

    # Who is creating the token (ApiTokenAdmin.get_form); without the user field, the token is theirs.
    creator: AbstractBaseUser

    class Meta:
        model = ApiToken
        fields = ["user", "name", "scope"]

    def clean_name(self) -> str:
        # Names reach logs and the command's output as they are, as create_api_token refuses too.
        if problem := unsafe_character(self.cleaned_data["name"]):
            raise forms.ValidationError(problem)
        return self.cleaned_data["name"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if "user" not in self.fields:
            data["user"] = self.instance.user = self.creator
        elif data.get("user") is not None and not data["user"].is_active:
            self.add_error("user", "this user is inactive; a token would be refused")
        # The form leaves revoked_at out, so Django skips the constraint naming it: checked here.
        ApiToken(user=data.get("user"), name=data.get("name")).validate_constraints()
        return data


@admin.register(ApiToken)
class ApiTokenAdmin(AuditedAdmin):
    list_display = ["prefix", "name", "user", "scope", "is_legacy", "created", "expiry", "last_used", "revoked_at"]
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter), "created"]
    search_fields = ["name", "token_key", "user__username"]
    list_select_related = ["user"]
    # `owner`, not `user`: a read-only user field links to the user admin, which token owners mostly may not open.
    readonly_fields = ["token_key", "owner", "name", "scope", "created", "expiry", "last_used", "revoked_at"]
    fields = readonly_fields
    raw_id_fields = ["user"]
    actions = ["revoke"]

    @admin.display(description="prefix", ordering="token_key")
    def prefix(self, token: ApiToken) -> str:
        return f"{token.token_key}…"

    @admin.display(description="user")
    def owner(self, token: ApiToken) -> str:
        return token.user.get_username()

    @admin.display(boolean=True, description="legacy")
    def is_legacy(self, token: ApiToken) -> bool:
        return token.legacy

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        # As for adding: anyone but a superuser lists and revokes their own tokens only (a revoke of
        # another's would cut off that user's automation, the superuser's included).
        tokens = super().get_queryset(request)
        return tokens if request.user.is_superuser else tokens.filter(user=request.user)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = NewTokenForm
        form = super().get_form(request, obj, change, **kwargs)
        form.creator = request.user  # a class made for this request by modelform_factory
        return form

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is not None:
            return self.fields
        # A token acts as its user: a token for someone else would be a way into their permissions.
        return ["user", "name", "scope", "days"] if request.user.is_superuser else ["name", "scope", "days"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [] if obj is None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: ApiToken, form: NewTokenForm, change: bool) -> None:
        if change:
            return  # every field of an existing token is read-only
        obj.user = form.cleaned_data["user"]
        secret = obj.set_secret(form.cleaned_data["days"])
        super().save_model(request, obj, form, change)
        self.message_user(request, f"Token {obj.name!r} created; its secret, shown only now: {secret}")

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        self.message_user(request, f"{queryset.revoke()} token(s) revoked.", messages.SUCCESS)

    def audit_target(self, token: ApiToken) -> str:
        """Whose token, by name, as create_api_token records it: never its secret or prefix."""
        return f"token {token.name!r} of {token.user.get_username()}"

    def action_target(self, rows: QuerySet[ApiToken]) -> str:
        """The tokens an action (revoke) was run on, by name."""
        return ", ".join(self.audit_target(token) for token in rows.select_related("user"))
