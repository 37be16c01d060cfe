"""Plain Django views for machines: /healthz (liveness), /readyz (readiness). /metrics is embedportal.views."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from pipeline import health


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse(health.liveness().as_dict())


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    result = health.readiness()
    return JsonResponse(result.as_dict(), status=200 if result.ok else 503)
