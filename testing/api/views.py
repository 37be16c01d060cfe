"""The operations tests' API: test runs (POST runs the suite), golden queries and benchmark runs."""

from __future__ import annotations

from typing import Any

import django_filters
from django.http import Http404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import SAFE_METHODS
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from embedportal.api.errors import Conflict
from embedportal.api.permissions import requires
from embedportal.api.strict import StrictFilterSet
from pipeline.access import names_hidden, without_hidden_targets
from pipeline.api.filters import collection_filter
from pipeline.models import GoldenQuery, visible
from testing.api.serializers import (
    BenchmarkRunSerializer,
    GoldenQuerySerializer,
    RunRequestSerializer,
    TestRunDetailSerializer,
    TestRunSerializer,
    run_url,
)
from testing.choices import Trigger
from testing.junit import run_to_junit
from testing.models import ACTIVE, BenchmarkRun, RunInProgress, TestResult, TestRun, queued_note
from testing.reserved import wait_until
from testing.tasks import queue_run


class JUnitXMLRenderer(BaseRenderer):
    """The JUnit XML testing.junit wrote, as it is (an error is JSON: TestRunViewSet.finalize_response)."""

    media_type = "application/xml"
    format = "xml"
    charset = None  # the document declares its own encoding

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return data


class TextXMLRenderer(JUnitXMLRenderer):
    media_type = "text/xml"


VIEW_RUNS = "testing.view_testrun"
RunPermission = requires("testing.run_testrun", GET=VIEW_RUNS, HEAD=VIEW_RUNS, OPTIONS=VIEW_RUNS)


@extend_schema_view(
    list=extend_schema(summary="List the operations test runs, newest first"),
    retrieve=extend_schema(summary="One operations test run with its scenario results"),
)
class TestRunViewSet(viewsets.ReadOnlyModelViewSet):
    """Runs of the operations tester (run_ops_tests, the test trigger, the schedules)."""

    queryset = TestRun.objects.all()
    permission_classes = [RunPermission]

    def get_serializer_class(self) -> Any:
        return TestRunDetailSerializer if self.action == "retrieve" else TestRunSerializer

    def get_object(self) -> TestRun:
        run = super().get_object()
        # A run naming another team's collection is read without it (the serializers leave it out), but a
        # change to it (cancel) is that team's: to anyone else the run is unknown, as the collection is.
        if self.request.method not in SAFE_METHODS and names_hidden(run.selection, self.request.user, run.finished_at):
            raise Http404
        return run

    @extend_schema(request=RunRequestSerializer, responses={200: TestRunDetailSerializer, 202: TestRunSerializer})
    def create(self, request: Request) -> Response:
        """Queue the full suite (or the categories/scenarios asked for) for the test runner.

        Waits up to `wait` seconds: 200 with the results when the run finished, else 202 with the
        run's URL to poll (a run still queued says why: no test runner is running, or it is busy).
        One run queued at a time: 409 names the queued run.
        """
        body = RunRequestSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        selection = {**body.validated_data}
        wait = selection.pop("wait")
        try:
            run, _ = queue_run(requested_by=request.user.get_username(), trigger=Trigger.API, **selection)
        except RunInProgress as exc:
            queued = exc.run
            raise Conflict(
                f"test run {queued.pk} is queued (since {queued.started_at:%Y-%m-%d %H:%M:%S} UTC, by "
                f"{queued.trigger}; {queued_note(queued)}); poll {run_url(queued.pk)}"
                if queued
                else "a test run is queued"
            ) from None
        wait_until(lambda: not TestRun.objects.filter(pk=run.pk, status__in=ACTIVE).exists(), wait)
        run.refresh_from_db()
        if run.status in ACTIVE:
            data = TestRunSerializer(run, context=self.get_serializer_context()).data
            return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": data["url"]})
        return Response(TestRunDetailSerializer(run, context=self.get_serializer_context()).data)

    @extend_schema(request=None, responses={200: TestRunSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancel a queued or running run: a runner never starts it, a running one stops after its
        current scenario. 409 when it has already finished; 404 to a team member when it names another
        team's collection (theirs to cancel)."""
        run = self.get_object()
        if not TestRun.objects.filter(pk=run.pk).cancel(request.user.get_username()):
            raise Conflict(f"test run {run.pk} has already finished ({run.status})")
        run.refresh_from_db()
        return Response(TestRunSerializer(run, context=self.get_serializer_context()).data)

    @extend_schema(responses={(200, "application/xml"): str, (200, "text/xml"): str})
    @action(detail=True, methods=["get"], renderer_classes=[JUnitXMLRenderer, TextXMLRenderer])
    def junit(self, request: Request, pk: str | None = None) -> Response:
        """The run's results as JUnit XML (xunit2, flaky attempts as flakyFailure), for `Accept: application/xml`,
        `text/xml`, `*/*` or none; another Accept is a 406. Errors are JSON whatever is accepted."""
        seen = without_hidden_targets(TestResult.objects.all(), request.user)
        return Response(run_to_junit(self.get_object(), seen).tostring())

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        # The JUnit renderers write only the XML: an error (a 404, the 406 of an Accept naming no XML) is
        # JSON, as every error of the API, whatever was accepted.
        # A POST to the address has no action, but the XML renderer: its 403 was "error" as XML. A 406 has neither
        # renderer nor negotiation yet (DRF forces one below), but the action.
        xml = self.action == "junit" or isinstance(getattr(request, "accepted_renderer", None), JUnitXMLRenderer)
        if xml and getattr(response, "exception", False):
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)


class GoldenQueryFilter(StrictFilterSet):
    collection = collection_filter("collection")

    class Meta:
        model = GoldenQuery
        fields = ["collection"]


class BenchmarkRunFilter(StrictFilterSet):
    # A ChoiceFilter: django-filter's BooleanFilter takes any other word for "no filter".
    regressed = django_filters.ChoiceFilter(
        choices=[("true", "true"), ("false", "false")], method="_regressed", help_text="Runs with a regression or none"
    )
    machine = django_filters.CharFilter(field_name="machine_fingerprint", help_text="Machine fingerprint")

    class Meta:
        model = BenchmarkRun
        fields = ["regressed", "suite", "machine"]

    @staticmethod
    def _regressed(qs: Any, name: str, value: str) -> Any:
        return qs.filter(regressions__gt=0) if value == "true" else qs.filter(regressions=0)


class GoldenQueryViewSet(viewsets.ModelViewSet):
    """Operators' golden queries: query -> the document it must find, per collection."""

    queryset = GoldenQuery.objects.select_related("collection")
    serializer_class = GoldenQuerySerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = GoldenQueryFilter

    def get_queryset(self) -> Any:
        return super().get_queryset().filter(visible(self.request.user, "collection"))


class BenchmarkRunViewSet(viewsets.ReadOnlyModelViewSet):
    """Benchmark runs (`manage.py benchmark`), newest first: each benchmark's figures as repeated samples and
    their comparison with earlier runs on the same machine; `regressed` names the figures flagged.
    Filters: ?regressed=true|false, ?suite=quick|full, ?machine=<fingerprint>."""

    queryset = BenchmarkRun.objects.all()
    serializer_class = BenchmarkRunSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = BenchmarkRunFilter

    def get_queryset(self) -> Any:
        return super().get_queryset().readable_by(self.request.user)
