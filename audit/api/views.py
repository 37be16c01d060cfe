from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, viewsets

from audit.api.serializers import AuditEventSerializer
from audit.models import AuditEvent
from embedportal.api.strict import DateTimeFilter, StrictFilterSet


class AuditEventFilter(StrictFilterSet):
    since = DateTimeFilter(field_name="at", lookup_expr="gte", help_text="At or after (ISO 8601)")
    until = DateTimeFilter(field_name="at", lookup_expr="lt", help_text="Before (ISO 8601)")

    class Meta:
        model = AuditEvent
        fields = ["collection", "actor", "token", "action", "via", "since", "until"]


@extend_schema_view(
    list=extend_schema(
        summary="The audit trail",
        description="State-changing actions through the API, the admin and the management commands, newest "
        "first. Permission audit.view_auditevent.",
    )
)
class AuditEventViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Audit events (`?collection=`, `?actor=`, `?action=`, `?via=`, `?token=`, `?since=`, `?until=`)."""

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = AuditEventFilter
