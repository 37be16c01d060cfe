"""The endpoint x scope x grant table (docs/reference/access.md): for every API route and method, the token
scope it needs and the Django permission that grants it, from the URL conf and the views' permission classes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from rest_framework.permissions import AllowAny, DjangoModelPermissions, IsAuthenticated
from rest_framework.request import Request
from rest_framework.schemas.generators import BaseSchemaGenerator, EndpointEnumerator

from embedportal.api.permissions import PermissionRequired, permission_kind, request_kind

SIGNED_IN = "(signed in)"
ANYONE = "(none)"


@dataclass(frozen=True)
class Grant:
    method: str
    path: str
    scope: str  # the lowest token scope that may make the request
    permission: str  # the Django permission that grants it, or SIGNED_IN / ANYONE
    field: str = ""  # set: the row holds for a change of this field only


class _ApiEndpoints(EndpointEnumerator):
    """Every DRF view under /api/, the API root included (the schema enumerator leaves it out)."""

    def should_include_endpoint(self, path: str, callback: Any) -> bool:
        return path.startswith("/api/") and hasattr(callback, "cls")


def _permission(method: str, view: Any) -> str:
    if getattr(view, "_ignore_model_permissions", False):  # DRF's API root: any signed-in user
        return SIGNED_IN
    for permission in view.get_permissions():
        if isinstance(permission, PermissionRequired):
            return permission.perms.get(method, permission.perm)
        if isinstance(permission, DjangoModelPermissions):
            queryset = view.queryset if view.queryset is not None else view.get_queryset()
            return ", ".join(permission.get_required_permissions(method, queryset.model))
        if isinstance(permission, IsAuthenticated):
            return SIGNED_IN
        if isinstance(permission, AllowAny):
            return ANYONE
    raise ValueError(f"{type(view).__name__}: no permission class the table knows")


def grants() -> list[Grant]:
    rows = []
    generator = BaseSchemaGenerator()
    for path, method, callback in _ApiEndpoints().get_api_endpoints():
        http = HttpRequest()
        http.method = method
        view = generator.create_view(callback, method, Request(http))
        rows.append(Grant(method, path, request_kind(view.request, view), _permission(method, view)))
        if method in ("PUT", "PATCH"):
            for field, perm in getattr(view, "field_permissions", {}).items():
                rows.append(Grant(method, path, permission_kind(perm), perm, field))
    return sorted(set(rows), key=lambda g: (g.path, g.method, g.field))
