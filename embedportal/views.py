"""GET /metrics for Prometheus: the process metrics plus the apps' scrape-time collectors,
optionally restricted by client IP and HTTP basic auth."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from embedportal import metrics


def _ip_allowed(request: HttpRequest) -> bool:
    networks = settings.EMBEDPORTAL_METRICS_ALLOWED_IPS
    if not networks:
        return True
    try:
        # REMOTE_ADDR, never X-Forwarded-For: a client can write that header itself.
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in networks)


def _credentials_ok(request: HttpRequest) -> bool:
    expected = settings.EMBEDPORTAL_METRICS_BASIC_AUTH
    if not expected:
        return True
    scheme, _, encoded = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    # Constant-time: the comparison must not leak how much of the password matched.
    return hmac.compare_digest(given.encode(), expected.encode())


@never_cache
@require_GET
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    if not _ip_allowed(request):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    if not _credentials_ok(request):
        response = HttpResponse("authentication required\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Basic realm="metrics"'
        return response
    body, content_type = metrics.exposition(request.META.get("HTTP_ACCEPT"))
    return HttpResponse(body, content_type=content_type)
