"""GET /api/v1/health/: the three pipeline checks for load balancers, monitors and people."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from pipeline import health


class HealthView(APIView):
    """The model answers, pgvector is writable, the queue is drained: 200 if all pass, else 503.

    Anonymous callers (load balancers, monitors) get pass/fail per check only; an authenticated
    one (token or session) gets each check's reason, duration and details, every model
    configuration included. Model probes are reused for EMBEDPORTAL_HEALTH_MODEL_CACHE_SECONDS,
    so probing this endpoint costs at most one provider call per configuration per interval.
    """

    permission_classes = [AllowAny]

    @extend_schema(responses={200: dict, 503: dict})
    def get(self, request: Request) -> Response:
        results = health.run_checks(cached=True)
        body = health.report(results) if request.user.is_authenticated else health.summary(results)
        return Response(body, status=200 if body["healthy"] else 503)
