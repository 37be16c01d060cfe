from __future__ import annotations

from rest_framework import serializers

from audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = (
            "id",
            "at",
            "via",
            "actor",
            "token",
            "address",
            "action",
            "collection",
            "target",
            "documents",
            "changes",
        )
