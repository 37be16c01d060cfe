"""API throttling (429 with Retry-After): requests per user (or token) and kind of request, failed token
authentications per client address; counted in the database cache. Notes: docs/operations.md, "Throttling"."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection, transaction
from rest_framework import authentication
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.throttling import SimpleRateThrottle

from embedportal.api.permissions import request_kind

if TYPE_CHECKING:  # rest_framework.views imports this module (DEFAULT_THROTTLE_CLASSES)
    from rest_framework.request import Request
    from rest_framework.views import APIView


class _SettingsRate(SimpleRateThrottle):
    """A rate read from settings.EMBEDPORTAL_THROTTLE_RATES at request time (DRF's own reads it at import)."""

    def __init__(self) -> None:
        pass

    def use(self, scope: str) -> None:
        self.scope = scope
        self.rate = settings.EMBEDPORTAL_THROTTLE_RATES[scope]
        self.num_requests, self.duration = self.parse_rate(self.rate)


class KindRateThrottle(_SettingsRate):
    def allow_request(self, request: Request, view: APIView) -> bool:
        self.use(request_kind(request, view))
        key = self.get_cache_key(request, view)
        # The cache's read-count-write is not atomic: concurrent requests of one client would all
        # read the same count (a burst of 40 got 25 through a 10/min rate). A transaction-scoped
        # advisory lock on the key serialises them; the cache table is on this same connection.
        with transaction.atomic(), connection.cursor() as cur:
            lock = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
            cur.execute("SELECT pg_advisory_xact_lock(%s)", [lock])
            return super().allow_request(request, view)

    def get_cache_key(self, request: Request, view: APIView) -> str:
        if request.auth is not None and hasattr(request.auth, "pk"):
            # A digest: the cache table must not hold a working token.
            ident = "token-" + hashlib.sha256(str(request.auth.pk).encode()).hexdigest()[:24]
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            ident = self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class BadTokenThrottle(_SettingsRate):
    """Failed token authentications of one address: at the rate, every token from there is refused."""

    def over(self, request: Request) -> bool:
        self.use("bad_token")
        self.key = self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        return len(self.history) >= self.num_requests


class BadTokenThrottled:
    """Mixed into tokens.auth: refuses (429) an address that sent too many bad tokens."""

    def authenticate(self, request: Request) -> Any:
        if not authentication.get_authorization_header(request):
            return None
        throttle = BadTokenThrottle()
        if throttle.over(request):
            raise Throttled(throttle.wait())
        try:
            return super().authenticate(request)  # type: ignore[misc]
        except AuthenticationFailed:
            throttle.throttle_success()  # records this failure
            raise
