from __future__ import annotations

from rest_framework import serializers

from embedportal.api.strict import StrictCharField, StrictFieldsMixin
from pipeline.choices import ErrorType
from reprocessing.choices import Resolution
from reprocessing.models import FailedDocument


class FailedDocumentSerializer(serializers.ModelSerializer):
    external_id = serializers.CharField(source="document.external_id", read_only=True)
    collection = serializers.CharField(source="document.collection.name", read_only=True)
    # Declared: a read-only model field's schema leaves out the blank choice an open failure has.
    resolution = serializers.ChoiceField(
        Resolution.choices, allow_blank=True, read_only=True, help_text="Empty while open."
    )

    class Meta:
        model = FailedDocument
        fields = [
            "id",
            "document",
            "external_id",
            "collection",
            "error_type",
            "stage",
            "message",
            "attempts",
            "state",
            "first_failed_at",
            "last_failed_at",
            "next_retry_at",
            "retried_at",
            "resolved_at",
            "resolution",
        ]
        read_only_fields = fields


class BulkRetrySerializer(StrictFieldsMixin, serializers.Serializer):
    """Retry every scheduled or dead-lettered failure of one type (e.g. after a provider outage)."""

    error_type = serializers.ChoiceField(choices=ErrorType.choices)
    collection = StrictCharField(required=False, max_length=63, help_text="Only this collection's documents")


class RetryResultSerializer(serializers.Serializer):
    retried = serializers.IntegerField()
    by_type = serializers.DictField(child=serializers.IntegerField())
