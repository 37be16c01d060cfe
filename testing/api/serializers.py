from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.validators import UniqueTogetherValidator

from embedportal.api.strict import (
    StrictBooleanField,
    StrictCharField,
    StrictFieldsMixin,
    StrictIntegerField,
    StrictModelSerializer,
)
from pipeline.access import without_hidden_names, without_hidden_targets
from pipeline.api.serializers import CollectionField
from pipeline.models import RESERVED_PREFIX, Collection, GoldenQuery
from pipeline.models.quality import golden_query_problems
from testing.benchmarks import regression
from testing.choices import Category, RunStatus
from testing.models import BenchmarkRun, TestResult, TestRun, queued_note
from testing.registry import REGISTRY, UnknownSelection, select

# The request holds a sync gunicorn worker while it waits: gunicorn kills it at --timeout 120 (scripts/run.sh,
# the web Deployment) and ingress-nginx answers 504 after 60 s of silence (its proxy-read-timeout), so a wait
# of 150 s ended in gunicorn's HTML 500. 50 s leaves both room for queueing and serialising the results.
MAX_WAIT_SECONDS = 50


def run_url(pk: int) -> str:
    """The run's address, ending in a slash as every `url` of the API does."""
    return f"/api/v1/embedding-pipeline-operations/test/{pk}/"


class SeenResults(serializers.ListSerializer):
    """A run's results in an answer to a request, whichever view answers: those its user may see."""

    def to_representation(self, data: Any) -> list:
        if request := self.context.get("request"):
            data = without_hidden_targets(data.all(), request.user)
        return super().to_representation(data)


class TestResultSerializer(serializers.ModelSerializer):
    class Meta:
        model = TestResult
        exclude = ["id", "run"]
        list_serializer_class = SeenResults


class TestRunSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()

    class Meta:
        model = TestRun
        exclude = ["heartbeat_at"]  # the run slot's liveness, not a result

    def get_url(self, run: TestRun) -> str:
        return run_url(run.pk)

    def to_representation(self, run: TestRun) -> dict:
        data = super().to_representation(run)
        if request := self.context.get("request"):  # a run started by the request names only what it may see
            data["selection"] = without_hidden_names(run.selection, request.user, run.finished_at)
        if run.status == RunStatus.QUEUED:  # why it has not started, from the runners' heartbeats
            data["message"] = queued_note(run)
        return data


class TestRunDetailSerializer(TestRunSerializer):
    results = TestResultSerializer(many=True, read_only=True)


class RunRequestSerializer(StrictFieldsMixin, serializers.Serializer):
    """What to run: everything by default."""

    categories = serializers.ListField(child=serializers.ChoiceField(Category.choices), default=list)
    scenarios = serializers.ListField(child=StrictCharField(), default=list)
    quick = StrictBooleanField(default=False)
    collections = serializers.ListField(child=StrictCharField(), default=list)
    wait = StrictIntegerField(
        default=30,
        min_value=0,
        max_value=MAX_WAIT_SECONDS,
        help_text=f"Seconds to wait for the results (at most {MAX_WAIT_SECONDS}, below the web worker's timeout) "
        "before answering 202 with the run's URL.",
    )

    def validate_scenarios(self, value: list[str]) -> list[str]:
        if unknown := sorted(set(value) - set(REGISTRY)):
            raise serializers.ValidationError(f"unknown scenarios: {', '.join(unknown)}")
        return value

    def validate(self, attrs: dict) -> dict:
        try:
            select(attrs["categories"], attrs["scenarios"], quick=attrs["quick"])
        except UnknownSelection as exc:
            raise serializers.ValidationError({"quick": str(exc)}) from None
        return attrs

    def validate_collections(self, value: list[str]) -> list[str]:
        seen = Collection.objects.visible_to(self.context["request"].user)
        known = set(seen.filter(name__in=value).values_list("name", flat=True))
        if unknown := sorted(set(value) - known):
            raise serializers.ValidationError(f"no collections named {', '.join(unknown)}")
        return value


class GoldenQuerySerializer(StrictModelSerializer):
    collection = CollectionField(queryset=Collection.objects.exclude(name__startswith=RESERVED_PREFIX))

    class Meta:
        model = GoldenQuery
        fields = ["id", "collection", "query", "expected_document_id", "created_at"]
        read_only_fields = ["id", "created_at"]
        # DRF's own message said "The fields collection, query must make a unique set."
        validators = [
            UniqueTogetherValidator(
                GoldenQuery.objects.all(),
                ["collection", "query"],
                "the collection has this query already: change that golden query's expected_document_id instead",
            )
        ]

    def validate(self, data: dict) -> dict:
        if found := golden_query_problems(data):
            raise serializers.ValidationError(found)
        return data


class BenchmarkRunSerializer(serializers.ModelSerializer):
    regressed = serializers.SerializerMethodField()

    class Meta:
        model = BenchmarkRun
        fields = "__all__"

    def get_regressed(self, run: BenchmarkRun) -> list[str]:
        """The figures flagged, as benchmark.figure."""
        return [f"{b}.{f}" for b, f in regression.regressions(run.comparison)]
