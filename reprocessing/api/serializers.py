from __future__ import annotations

from rest_framework import serializers

from pipeline.choices import ErrorType, Stage
from reprocessing.choices import FailureState
from reprocessing.models import FailedDocument


class FailedDocumentSerializer(serializers.ModelSerializer):
    external_id = serializers.CharField(source="document.external_id", read_only=True)
    collection = serializers.CharField(source="document.collection.name", read_only=True)

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


class FailureFilterSerializer(serializers.Serializer):
    """Query parameters of the failure list; ages are seconds since the first failure."""

    error_type = serializers.ChoiceField(choices=ErrorType.choices, required=False)
    state = serializers.ChoiceField(choices=FailureState.choices, required=False)
    stage = serializers.ChoiceField(choices=Stage.choices, required=False)
    collection = serializers.SlugField(required=False)
    min_age = serializers.IntegerField(min_value=0, required=False, help_text="Failed at least this many seconds ago")
    max_age = serializers.IntegerField(min_value=0, required=False, help_text="Failed at most this many seconds ago")


class BulkRetrySerializer(serializers.Serializer):
    """Retry every waiting or dead-lettered failure of one type (e.g. after a provider outage)."""

    error_type = serializers.ChoiceField(choices=ErrorType.choices)
    collection = serializers.SlugField(required=False, help_text="Only this collection's documents")


class RetryResultSerializer(serializers.Serializer):
    retried = serializers.IntegerField()
    by_type = serializers.DictField(child=serializers.IntegerField())
