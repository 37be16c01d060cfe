"""GET /api/v1/health/: the three pipeline checks for load balancers, monitors and people."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from pipeline import health


class HealthView(APIView):
    """The model answers, pgvector is writable, the queue is drained: 200 if all pass, else 503."""

    # A probe carries no credentials; the answer holds no data beyond pass/fail and reasons.
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses={200: dict, 503: dict})
    def get(self, request: Request) -> Response:
        body = health.report(health.run_checks())
        return Response(body, status=200 if body["healthy"] else 503)
