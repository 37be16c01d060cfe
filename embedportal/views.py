"""GET /metrics for Prometheus: the process metrics plus the apps' scrape-time collectors,
restricted by client IP, HTTP basic auth and/or a bearer token; loopback only when none is set."""

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

# Closed by default beyond this machine: `make run` and a local Prometheus still scrape.
LOOPBACK = ("127.0.0.0/8", "::1/128")


def _ip_allowed(request: HttpRequest, networks: list[str] | tuple[str, ...]) -> bool:
    try:
        # REMOTE_ADDR, never X-Forwarded-For: a client can write that header itself.
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in networks)


def _credentials_ok(request: HttpRequest, basic: str, token: str) -> bool:
    scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    expected = {"basic": basic, "bearer": token}.get(scheme.lower())
    if not expected:
        return False
    if scheme.lower() == "basic":
        try:
            given = base64.b64decode(given.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
    # Constant-time: the comparison must not leak how much of the secret matched.
    return hmac.compare_digest(given.strip().encode(), expected.encode())


@never_cache
@require_GET
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    basic, token = settings.EMBEDPORTAL_METRICS_BASIC_AUTH, settings.EMBEDPORTAL_METRICS_TOKEN
    networks = settings.EMBEDPORTAL_METRICS_ALLOWED_IPS or (() if basic or token else LOOPBACK)
    if networks and not _ip_allowed(request, networks):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    if (basic or token) and not _credentials_ok(request, basic, token):
        response = HttpResponse("authentication required\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = f'{"Basic" if basic else "Bearer"} realm="metrics"'
        return response
    body, content_type = metrics.exposition(request.META.get("HTTP_ACCEPT"))
    return HttpResponse(body, content_type=content_type)
