from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.permissions import BasePermission, DjangoModelPermissions

if TYPE_CHECKING:  # rest_framework.views imports this module (DEFAULT_PERMISSION_CLASSES)
    from rest_framework.request import Request
    from rest_framework.views import APIView


class ModelPermissions(DjangoModelPermissions):
    """DRF's default lets any authenticated user read; we require view_* as well."""

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }


class PermissionRequired(BasePermission):
    """Authenticated and holding `perm`: the permission an operational trigger needs.

    `perms` maps HTTP methods to permissions for an action serving several (GET lists, POST adds).
    """

    perm = ""
    perms: dict[str, str] = {}

    def has_permission(self, request: Request, view: APIView) -> bool:
        perm = self.perms.get(request.method or "", self.perm)
        self.message = f"permission {perm} required"
        return bool(request.user and request.user.is_authenticated and request.user.has_perm(perm))
