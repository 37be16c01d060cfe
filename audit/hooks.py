"""The admin's audit hooks: additions, changes (before and after), deletions and every admin action."""

from __future__ import annotations

import functools
from typing import Any

from django import forms
from django.db.models import Model, QuerySet
from django.http import HttpRequest

from audit import trail


def _audited_action(func: Any, name: str) -> Any:
    @functools.wraps(func)
    def run(model_admin: Any, request: HttpRequest, queryset: QuerySet) -> Any:
        selected = queryset.model._default_manager.filter(pk__in=list(queryset.values_list("pk", flat=True)))
        response = func(model_admin, request, queryset)
        # delete_selected's first answer is its confirmation page; its deletions are logged below.
        if name != "delete_selected":
            trail.admin(request, name, selected, target=model_admin.action_target(selected))
        return response

    return run


class Audited:
    """ModelAdmin mixin: Django's admin log calls, and actions, also write the audit trail."""

    def audit_target(self, obj: Model) -> str:
        """What an event about `obj` names as its target (a collection's events name it as their collection)."""
        return str(obj)

    def action_target(self, rows: QuerySet) -> str:
        """What an action's event names as its target beyond the collection and the count (nothing here)."""
        return ""

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        found = super().get_actions(request)  # type: ignore[misc]
        return {key: (_audited_action(func, name), name, text) for key, (func, name, text) in found.items()}

    def construct_change_message(
        self, request: HttpRequest, form: forms.ModelForm, formsets: Any, add: bool = False
    ) -> Any:
        if not add:
            changed = form.changed_data
            request.audit_changes = trail.changes(  # type: ignore[attr-defined]
                {f: form.initial.get(f) for f in changed}, {f: form.cleaned_data.get(f) for f in changed}
            )
        return super().construct_change_message(request, form, formsets, add)  # type: ignore[misc]

    def log_addition(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        self._record(request, "add", obj)
        return super().log_addition(request, obj, message)  # type: ignore[misc]

    def log_change(self, request: HttpRequest, obj: Model, message: Any) -> Any:
        self._record(request, "change", obj, changes=getattr(request, "audit_changes", None))
        return super().log_change(request, obj, message)  # type: ignore[misc]

    def log_deletions(self, request: HttpRequest, queryset: Any) -> Any:
        for obj in queryset:
            self._record(request, "delete", obj)
        return super().log_deletions(request, queryset)  # type: ignore[misc]

    def _record(self, request: HttpRequest, action: str, obj: Model, **fields: Any) -> None:
        own = obj._meta.label == "pipeline.Collection"
        rows = type(obj)._default_manager.filter(pk=obj.pk)
        trail.admin(request, action, rows, target="" if own else self.audit_target(obj), **fields)
