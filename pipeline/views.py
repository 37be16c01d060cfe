"""Plain Django views for machines: /healthz (liveness), /readyz (readiness). /metrics is embedportal.views."""

from __future__ import annotations

import logging

from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from pipeline import health

logger = logging.getLogger(__name__)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse(health.liveness().as_dict())


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Anonymous callers (the kubelet) get pass or fail only: a database error can name a socket
    path, a host or a migration. The reason goes to the log, and to signed-in staff."""
    result = health.readiness()
    if not result.ok:
        logger.warning("not ready: %s", result.reason)
    try:
        staff = request.user.is_staff  # a session cookie is looked up in the database
    except DatabaseError:
        staff = False
    body = result.as_dict() if staff else {"name": result.name, "ok": result.ok}
    return JsonResponse(body, status=200 if result.ok else 503)
