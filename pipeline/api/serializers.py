from __future__ import annotations

import copy
from typing import Any

from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from embedportal.api.errors import dot_segments_encoded
from embedportal.api.strict import (
    StrictBooleanField,
    StrictCharField,
    StrictFieldsMixin,
    StrictIntegerField,
    StrictModelSerializer,
)
from pipeline import backfill
from pipeline.choices import SearchMode
from pipeline.models import Collection, Document, RetrievalEvaluation, sees_all_collections
from pipeline.search import MAX_QUERY_CHARS


class NameField(serializers.SlugRelatedField):
    """An object by its name, a JSON string: DRF's looked `{"collection": 0}` up as the name "0"."""

    default_error_messages = {"not_a_string": "must be a name, a JSON string (not {type})"}

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("not_a_string", type=type(data).__name__)
        return super().to_internal_value(data)


@extend_schema_field(OpenApiTypes.STR)
class CollectionField(NameField):
    """A collection by name among those the request's user may see: another team's reads as unknown."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(slug_field="name", **kwargs)

    def get_queryset(self) -> Any:
        among = Collection.objects.all() if self.queryset is None else self.queryset
        return among.visible_to(self.context["request"].user)


class TeamField(NameField):
    """A team by its group name: an operator may name any (or none: the platform's own), a team
    member only one of their own teams."""

    def __init__(self, **kwargs: Any) -> None:
        help_text = (
            "The owning team, a group's name: one of yours (default: your only one); "
            "null, operators only: the platform's."
        )
        super().__init__(slug_field="name", allow_null=True, required=False, help_text=help_text, **kwargs)

    def get_queryset(self) -> Any:
        user = self.context["request"].user
        return Group.objects.all() if sees_all_collections(user) else user.groups.all()


def own_team(user: Any) -> Group | None:
    """The team a team member's new collection gets when the request names none: their only team."""
    if sees_all_collections(user):
        return None
    teams = list(user.groups.all()[:2])
    if len(teams) != 1:
        raise serializers.ValidationError({"team": "name one of your teams (the collection's owner)"})
    return teams[0]


class CollectionSerializer(StrictModelSerializer):
    team = TeamField()
    held_back = serializers.SerializerMethodField(
        help_text="Why the re-embed writing building_generation is not switched to although every document was "
        "tried (more failed than were embedded), or null."
    )

    class Meta:
        model = Collection
        # A re-embed's progress: search reads `generation` until `building_generation` is switched to.
        read_only_fields = ["generation", "building_generation", "created_at", "updated_at"]
        fields = [*Collection.EDITABLE_FIELDS, "held_back", *read_only_fields]
        # Asked of the model when omitted (pipeline.collections.resolve_dimensions); bounds from the model field.
        extra_kwargs = {"dimensions": {"required": False}}

    def get_held_back(self, collection: Collection) -> str | None:
        return backfill.held_back(collection)

    # What a PUT or PATCH may not change, and why.
    FIXED = {
        "model": "changes only with a re-embed (POST reembed), which keeps search answering until it switches",
        "dimensions": "changes only with a re-embed (POST reembed), which keeps search answering until it switches",
        "contextual_chunks": "changes only with a re-embed (POST reembed)",
    }

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        user = self.context["request"].user
        if self.instance is None and "team" not in attrs:
            attrs["team"] = own_team(user)
        elif "team" in attrs and attrs["team"] is None and not sees_all_collections(user):
            raise serializers.ValidationError({"team": "only platform operators own collections without a team"})
        for name, why in self.FIXED.items():
            if self.instance is not None and name in attrs and attrs[name] != getattr(self.instance, name):
                raise serializers.ValidationError({name: why})
        chunking = [n for n in Collection.CHUNKING_FIELDS if n in attrs and attrs[n] != getattr(self.instance, n, None)]
        if chunking and self.instance is not None and self.instance.has_documents():
            why = "changes only with a re-embed (POST reembed) once the collection has documents (cut the old way)"
            raise serializers.ValidationError(dict.fromkeys(chunking, why))
        # Collection.clean()'s rules (DRF does not call it), on the collection the request would leave.
        collection = copy.copy(self.instance) if self.instance else Collection()
        for name, value in attrs.items():
            setattr(collection, name, value)
        if problems := collection.problems():
            raise serializers.ValidationError(problems)
        return attrs


class DocumentSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="external_id", read_only=True)
    url = serializers.SerializerMethodField(help_text="The document's address: its collection and id.")
    collection = serializers.SlugRelatedField(slug_field="name", read_only=True)
    available_at = serializers.DateTimeField(
        read_only=True, help_text="When a pending document may be claimed: later than now while it is deferred."
    )

    class Meta:
        model = Document
        exclude = ["external_id", "text"]  # the id is external_id

    def get_url(self, document: Document) -> str:
        """/api/v1/collections/<name>/documents/<external id>/ (the id percent-encoded, slashes kept)."""
        # The url of "a/../b" was sent as that of "b". Only the id can hold such a segment: a collection's
        # name is a slug.
        return dot_segments_encoded(
            reverse("collection-document", args=[document.collection.name, document.external_id])
        )


class AwareDateTimeField(serializers.DateTimeField):
    """Refuses a time without a timezone rather than guessing the server's (DRF's default)."""

    default_error_messages = {
        "naive": "Datetime has no timezone; add one, e.g. 2026-01-31T12:00:00Z.",
        "overflow": "Datetime is out of range in UTC (years 1 to 9999); send the source's real time.",
    }

    def enforce_timezone(self, value: Any) -> Any:
        if timezone.is_naive(value):
            self.fail("naive")
        return super().enforce_timezone(value)


class IncomingDocumentSerializer(StrictFieldsMixin, serializers.Serializer):
    id = serializers.CharField(max_length=Document._meta.get_field("external_id").max_length, trim_whitespace=False)
    text = StrictCharField(trim_whitespace=False, allow_blank=True)
    modified_at = AwareDateTimeField(required=False, allow_null=True)
    metadata = serializers.DictField(required=False, default=dict)

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError("each document must be a JSON object {id, text, modified_at?, metadata?}")
        if isinstance(data.get("id"), int) and not isinstance(data.get("id"), bool):
            data = {**data, "id": str(data["id"])}
        return super().to_internal_value(data)


class SearchSerializer(StrictFieldsMixin, serializers.Serializer):
    query = StrictCharField(max_length=MAX_QUERY_CHARS)
    k = StrictIntegerField(min_value=1, max_value=100, default=5)
    mode = serializers.ChoiceField(
        SearchMode.choices, required=False, help_text="Default: the collection's search_mode."
    )
    by_document = StrictBooleanField(
        default=False, help_text="The k best documents, each as its best chunk, instead of the k best chunks."
    )


class EvaluationSerializer(serializers.ModelSerializer):
    class Meta:
        model = RetrievalEvaluation
        exclude = ["id", "collection"]


class EvaluateSerializer(StrictFieldsMixin, serializers.Serializer):
    mode = serializers.ChoiceField(SearchMode.choices, required=False, help_text="Default: the collection's.")


def ids(help_text: str) -> serializers.ListField:
    return serializers.ListField(child=serializers.CharField(), help_text=help_text)


class EnqueuedSerializer(serializers.Serializer):
    """What an enqueue did with each document sent (queue.EnqueueResult)."""

    accepted = serializers.IntegerField(help_text="Created, updated and unchanged: every document but the stale.")
    created = ids("New documents, queued.")
    updated = ids("Changed documents, queued again.")
    unchanged = ids("The stored text and metadata already: not queued.")
    stale = ids("Older (by modified_at) than the stored version: not applied.")


class PausedSerializer(serializers.Serializer):
    collection = serializers.CharField()
    paused = serializers.BooleanField()
    changed = serializers.BooleanField(help_text="false: it was paused (or running) already.")


class ReembeddingSerializer(serializers.Serializer):
    collection = serializers.CharField()
    requeued = serializers.IntegerField(help_text="Documents queued to embed into the new generation.")


class HitSerializer(serializers.Serializer):
    document_id = serializers.CharField()
    ordinal = serializers.IntegerField(help_text="The chunk's position in its document.")
    score = serializers.FloatField()
    text = serializers.CharField(help_text="The chunk's text.")
    metadata = serializers.DictField(help_text="The document's metadata.")


class SearchResultSerializer(serializers.Serializer):
    collection = serializers.CharField()
    mode = serializers.ChoiceField(SearchMode.choices, help_text="The ranking that served the results.")
    fallback = serializers.CharField(
        allow_blank=True,
        help_text="Why a hybrid search was served from its keyword ranking alone (the query could not be "
        "embedded: the error type, or circuit_open); empty when it was not.",
    )
    results = HitSerializer(many=True, help_text="Best first.")


class CheckSerializer(serializers.Serializer):
    name = serializers.CharField()
    ok = serializers.BooleanField()
    reason = serializers.CharField(required=False, help_text="Platform operators only, as the rest.")
    seconds = serializers.FloatField(required=False)
    details = serializers.DictField(required=False)


class HealthSerializer(serializers.Serializer):
    """pipeline.health.report for platform operators, pass/fail per check (summary) for anyone else."""

    healthy = serializers.BooleanField()
    checks = CheckSerializer(many=True)
