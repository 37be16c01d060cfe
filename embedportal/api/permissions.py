"""Who may make a request: the user's Django permissions, capped by the token's scope, the highest kind of
request (read, write, operate: from the permission it needs) it may make. Notes: docs/api.md, "Tokens"."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import SAFE_METHODS, BasePermission, DjangoModelPermissions

if TYPE_CHECKING:  # rest_framework.views imports this module (DEFAULT_PERMISSION_CLASSES)
    from rest_framework.request import Request
    from rest_framework.views import APIView

# The kinds of request, each scope allowing the ones before it.
KINDS = ("read", "write", "operate")
# What a permission's action word makes a request: its kind is the permission it needs.
PERMISSION_KINDS = {"view": "read", "add": "write", "change": "write", "delete": "write"}


def permission_kind(perm: str) -> str:
    return PERMISSION_KINDS.get(perm.partition(".")[2].split("_")[0], "operate")


def request_kind(request: Request, view: APIView) -> str:
    """read (lists, retrievals, search), write (enqueue, create, change, delete) or operate (pause,
    requeue, re-embed, apply, run tests...): the kind of the permission the request needs."""
    for permission in view.get_permissions():
        if isinstance(permission, PermissionRequired):
            return permission_kind(permission.perms.get(request.method or "", permission.perm))
    return "read" if request.method in SAFE_METHODS else "write"


def scope_refusal(request: Request, kind: str) -> str:
    """Why the request's token may not make a request of `kind` ("" if it may). Session (admin
    login) requests carry no token: not capped."""
    scope = getattr(request.auth, "scope", None)
    if scope is None or KINDS.index(kind) <= KINDS.index(scope):
        return ""
    return f"a token of scope {kind} is needed; this token's scope is {scope}"


def demand(request: Request, perm: str) -> None:
    """403 unless the request may do what `perm` grants: a route acting for another action (a PATCH of
    `paused` is a pause) needs that action's permission."""
    if refusal := scope_refusal(request, permission_kind(perm)):
        raise PermissionDenied(refusal)
    if not request.user.has_perm(perm):
        raise PermissionDenied(f"permission {perm} required")


class ScopeCapped(BasePermission):
    """Refuses a token whose scope is below the request's kind, before the user's permissions."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if refusal := scope_refusal(request, request_kind(request, view)):
            self.message = refusal
            return False
        return super().has_permission(request, view)


class ModelPermissions(ScopeCapped, DjangoModelPermissions):
    """DRF's default lets any authenticated user read; we require view_* as well."""

    perms_map = {
        **DjangoModelPermissions.perms_map,
        **{method: ["%(app_label)s.view_%(model_name)s"] for method in SAFE_METHODS},
    }

    def has_permission(self, request: Request, view: APIView) -> bool:
        if super().has_permission(request, view):
            return True
        # Refused for a permission (not for the token's scope, nor anonymous: a 401): name it.
        if request.user.is_authenticated and not hasattr(self, "message"):
            perms = self.get_required_permissions(request.method, self._queryset(view).model)
            self.message = f"permission {' and '.join(perms)} required"
        return False


class PermissionRequired(ScopeCapped):
    """Authenticated and holding `perm` (or `perms[method]`, for an action serving several methods)."""

    perm = ""
    perms: dict[str, str] = {}

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not super().has_permission(request, view):
            return False
        perm = self.perms.get(request.method or "", self.perm)
        self.message = f"permission {perm} required"
        return bool(request.user and request.user.is_authenticated and request.user.has_perm(perm))


def requires(perm: str = "", **perms: str) -> type[PermissionRequired]:
    """A permission class needing `perm`, or perms[method] for an action serving several methods."""
    return type("Requires", (PermissionRequired,), {"perm": perm, "perms": perms})
