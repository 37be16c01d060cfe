"""GET /api/v1/slos/: the admin's "SLOs and capacity" figures, from the database history."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from embedportal.api.permissions import PermissionRequired
from pipeline import slo_page


class CanViewHistory(PermissionRequired):
    perm = "pipeline.view_collectionactivity"


class SloView(APIView):
    """Each SLO's compliance over 1 h, 1 d and 30 d (null: no events in the window), error budget left,
    burn rate over 1 h and 6 h; the capacity plan (load, capacity, headroom, projected date, workers
    needed); the last capacity measurement with its USL fit; and the chart series of `range`."""

    permission_classes = [CanViewHistory]

    @extend_schema(
        parameters=[
            OpenApiParameter("range", OpenApiTypes.STR, enum=list(slo_page.RANGES), default=slo_page.DEFAULT_RANGE),
            OpenApiParameter("collection", OpenApiTypes.STR, description="One collection (default: all user ones)"),
            OpenApiParameter("headroom", OpenApiTypes.FLOAT, default=0.3),
        ],
        responses={200: dict},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        try:
            headroom = float(params.get("headroom", 0.3))
        except ValueError:
            raise ValidationError({"headroom": "a number from 0 to below 1, e.g. 0.3"}) from None
        try:
            body = slo_page.figures(params.get("range", slo_page.DEFAULT_RANGE), params.get("collection"), headroom)
        except slo_page.BadRequest as exc:
            raise ValidationError(str(exc)) from None
        return Response(body)
