"""Runs and results through the API, the command and the models: one run at a time, permissions,
JUnit export, the configuration-change trigger, and the reserved collection prefix."""

from __future__ import annotations

import io
import json
import re
import signal
from ast import literal_eval
from datetime import timedelta
from functools import partial
from io import StringIO
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, ProgrammingError, transaction
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from drf_spectacular.generators import SchemaGenerator
from junitparser.xunit2 import JUnitXml
from rest_framework.test import APIClient

from embedportal import schedules
from pipeline.collections import create_collection
from pipeline.models import Collection
from testing import tasks
from testing.choices import RunStatus, Trigger
from testing.models import NO_RUNNER, RunInProgress, RunnerHeartbeat, TestRun
from testing.runner import TestRunner
from testing.tester import EmbeddingPipelineOperationsTester, RunnerStopped
from tests import tools
from tests.testing.conftest import change_configurations

URL = "/api/v1/embedding-pipeline-operations/test"


client_with = partial(tools.client_with, app="testing")


def test_only_one_run_can_be_running_in_the_database(db):
    first = TestRun.objects.start(trigger=Trigger.CLI)
    with pytest.raises(RunInProgress) as caught:
        TestRun.objects.start(trigger=Trigger.API)
    assert caught.value.run == first
    with pytest.raises(IntegrityError), transaction.atomic():
        TestRun.objects.create(
            trigger="api", status=RunStatus.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now()
        )
    assert TestRun.objects.finish(first.pk, RunStatus.PASSED, {}) == 1
    assert TestRun.objects.finish(first.pk, RunStatus.FAILED, {}) == 0  # compare-and-swap: already finished
    TestRun.objects.start(trigger=Trigger.API)


def test_a_run_whose_process_died_frees_the_slot(db, settings):
    stale = TestRun.objects.start(trigger=Trigger.SCHEDULE_DJANGO_Q)
    TestRun.objects.filter(pk=stale.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    TestRun.objects.start(trigger=Trigger.API)
    stale.refresh_from_db()
    assert stale.status == RunStatus.ERROR and "abandoned" in stale.message


@pytest.mark.parametrize("url", [URL, URL + "/"])
def test_post_queues_a_run_and_answers_202_saying_no_runner_picks_it_up(db, url):
    client = client_with("run_testrun", "view_testrun")
    response = client.post(url, {"categories": ["edge"], "scenarios": ["health_checks_pass"], "wait": 1}, format="json")
    assert response.status_code == 202, response.content
    run = TestRun.objects.get()
    assert response["Location"] == f"{URL}/{run.pk}/" == response.json()["url"]  # a slash as every url has
    assert run.trigger == Trigger.API and run.requested_by == User.objects.get().username
    assert run.selection["categories"] == ["edge"] and run.selection["scenarios"] == ["health_checks_pass"]
    assert run.status == RunStatus.QUEUED and not OrmQ.objects.exists()  # no django-q2 task: no worker slot
    assert response.json()["message"] == "queued: no test runner is running: start `manage.py run_test_runner`"

    conflict = client.post(url, {}, format="json")
    assert conflict.status_code == 409
    message = conflict.json()["error"]["message"]
    assert f"test run {run.pk} is queued" in message and "start `manage.py run_test_runner`" in message
    assert message.endswith(f"poll {URL}/{run.pk}/")

    RunnerHeartbeat.objects.beat("pod-a:7", run_id=41)
    polled = client.get(f"{URL}/{run.pk}").json()
    assert polled["status"] == "queued"
    assert polled["message"] == "queued: test runner pod-a:7 will pick it up (it runs test run 41)"
    assert client.get(URL).json()["results"][0]["id"] == run.pk


def test_the_runner_executes_the_queued_selection_and_the_results_are_served(live_worker):
    client = client_with("run_testrun", "view_testrun")
    response = client.post(
        URL, {"scenarios": ["duplicate_ids_in_one_batch_refused", "health_endpoints_answer"], "wait": 0}, format="json"
    )
    run_id = response.json()["id"]

    out = StringIO()
    call_command("run_test_runner", once=True, stdout=out)  # what the runner process does with the queued run

    assert f"Run {run_id}: passed" in out.getvalue() and "stopped after 1 run(s)" in out.getvalue()
    body = client.get(f"{URL}/{run_id}").json()
    assert body["status"] == "passed" and body["counts"] == {"passed": 2}
    assert [r["scenario"] for r in body["results"]] == ["duplicate_ids_in_one_batch_refused", "health_endpoints_answer"]
    assert not RunnerHeartbeat.objects.exists()  # a runner stopping removes its row
    xml = client.get(f"{URL}/{run_id}/junit")
    assert xml.status_code == 200 and xml["Content-Type"] == "application/xml"
    assert b'name="duplicate_ids_in_one_batch_refused"' in xml.content
    # Each run's XML holds its own results: every run's used to be served under each run's name.
    later = client.post(URL, {"scenarios": ["health_endpoints_answer"], "wait": 0}, format="json").json()["id"]
    call_command("run_test_runner", once=True, stdout=StringIO())
    for run, cases in ((run_id, 2), (later, 1)):
        assert client.get(f"{URL}/{run}/junit").content.count(b"<testcase ") == cases


def test_junit_answers_xml_to_what_accepts_xml_and_errors_as_json_whatever_is_accepted(db):
    # Accept: application/xml was a 406 while application/json (or ?format=json) got the XML.
    run = TestRun.objects.start(trigger=Trigger.CLI)
    client = client_with("view_testrun")
    xml = "application/xml"
    for accept, served in ((xml, xml), ("text/xml", "text/xml"), ("*/*", xml)):
        response = client.get(f"{URL}/{run.pk}/junit/", HTTP_ACCEPT=accept)
        assert (response.status_code, response["Content-Type"]) == (200, served), accept
        assert JUnitXml.fromstring(response.content).name == f"embedding-pipeline-operations run {run.pk}"
    assert client.get(f"{URL}/{run.pk}/junit/")["Content-Type"] == xml  # no Accept
    for url, accept, status in (
        (f"{URL}/{run.pk}/junit/", "application/json", 406),
        (f"{URL}/{run.pk}/junit/", "text/html", 406),
        (f"{URL}/999999/junit/", xml, 404),
        (f"{URL}/999999/junit/", "*/*", 404),
    ):
        refused = client.get(url, HTTP_ACCEPT=accept)
        assert (refused.status_code, refused["Content-Type"]) == (status, "application/json"), (url, accept)
        assert refused.json()["error"]["status"] == status
    unknown = client.get(f"{URL}/{run.pk}/junit/?format=json")
    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"] == "format: unknown format 'json'; known: xml"


def test_a_cancelled_run_is_never_started_and_a_finished_one_cannot_be_cancelled(db):
    client = client_with("run_testrun", "view_testrun")
    run_id = client.post(URL, {"scenarios": ["health_checks_pass"], "wait": 0}, format="json").json()["id"]

    cancelled = client.post(f"{URL}/{run_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "error"
    assert cancelled.json()["message"] == f"cancelled by {User.objects.get().username}"
    assert TestRunner().serve(once=True) == 0
    assert not TestRun.objects.get(pk=run_id).results.exists()
    again = client.post(f"{URL}/{run_id}/cancel")
    assert again.status_code == 409 and "already finished (error)" in again.json()["error"]["message"]
    assert client_with("view_testrun").post(f"{URL}/{run_id}/cancel").status_code == 403


def test_a_runner_claims_the_queued_run_once_and_not_beside_a_running_one(db):
    queued = TestRun.objects.start(RunStatus.QUEUED, trigger=Trigger.API)
    direct = TestRun.objects.start(trigger=Trigger.SCHEDULE_ARGO)  # run_ops_tests in a CronWorkflow pod
    assert TestRun.objects.claim() is None  # one running at a time: it stays queued
    TestRun.objects.finish(direct.pk, RunStatus.PASSED, {})
    claimed = TestRun.objects.claim()
    assert claimed.pk == queued.pk and claimed.status == RunStatus.RUNNING
    assert TestRun.objects.claim() is None  # compare-and-swap: a second runner gets nothing


def test_a_stop_signal_landing_mid_claim_leaves_no_run_running(db):
    runner = TestRunner()
    runner.stop()  # SIGTERM's handler while no run executes (e.g. inside claim()): only the flag, no raise
    queued = TestRun.objects.start(RunStatus.QUEUED, trigger=Trigger.API)
    claimed = TestRun.objects.claim()  # the claim the signal landed in completes
    with pytest.raises(RunnerStopped):
        runner.execute(claimed)
    queued.refresh_from_db()
    assert queued.status == RunStatus.ERROR and queued.message.startswith("interrupted")
    assert runner.serve() == 0  # a stopped runner claims nothing more


def test_an_error_the_stop_signal_causes_mid_query_still_records_the_run_interrupted(db, monkeypatch):
    runner, run = TestRunner(), TestRun.objects.start(trigger=Trigger.API)

    def beat_broken_by_the_signal(*args):
        with pytest.raises(RunnerStopped):
            runner.stop()  # lands inside the query; psycopg then fails on its way out, as it does
        raise ProgrammingError("can't change 'autocommit' now: connection in transaction status ACTIVE")

    monkeypatch.setattr(RunnerHeartbeat.objects, "beat", beat_broken_by_the_signal)
    with pytest.raises(RunnerStopped):
        runner.execute(run)
    run.refresh_from_db()
    assert run.status == RunStatus.ERROR and run.message == "interrupted: the test runner stopped (SIGTERM)"


def test_a_queued_run_is_abandoned_only_while_no_runner_is_alive(db, settings):
    queued = TestRun.objects.start(RunStatus.QUEUED, trigger=Trigger.CONFIG_CHANGE)
    TestRun.objects.filter(pk=queued.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    RunnerHeartbeat.objects.beat("busy:1", run_id=None)
    assert TestRun.objects.abandon_stale() == 0  # a runner is alive: it waits its turn
    RunnerHeartbeat.objects.update(beat_at=timezone.now() - timedelta(hours=1))
    assert TestRun.objects.abandon_stale() == 1
    queued.refresh_from_db()
    assert queued.status == RunStatus.ERROR and queued.message == f"abandoned: {NO_RUNNER}"


def test_a_killed_runners_heartbeat_row_is_cleared_by_a_live_runner(db):
    RunnerHeartbeat.objects.beat("killed:9")
    RunnerHeartbeat.objects.update(beat_at=timezone.now() - timedelta(minutes=2))
    RunnerHeartbeat.objects.beat("recent:8")
    RunnerHeartbeat.objects.beat("live:7")
    assert sorted(RunnerHeartbeat.objects.values_list("runner", flat=True)) == ["live:7", "recent:8"]


@pytest.fixture
def two_scenarios():
    """zz_first, then zz_second (whatever the test makes it do), registered for the test."""
    from testing import registry

    behaviour = {}
    registry.scenario("zz_first", "normal", "health")(lambda ctx: behaviour["first"](ctx))
    registry.scenario("zz_second", "normal", "health")(lambda ctx: None)
    yield behaviour
    del registry.REGISTRY["zz_first"], registry.REGISTRY["zz_second"]


def claimed_run(scenarios: list[str]) -> TestRun:
    TestRun.objects.start(RunStatus.QUEUED, trigger=Trigger.API, selection={"scenarios": scenarios})
    return TestRun.objects.claim()


def test_a_run_cancelled_while_running_stops_after_its_current_scenario(db, two_scenarios):
    two_scenarios["first"] = lambda ctx: TestRun.objects.filter(pk=ctx.run.pk).cancel("ops")
    run = claimed_run(["zz_first", "zz_second"])
    run = EmbeddingPipelineOperationsTester(**run.selection).execute(run)
    assert run.status == RunStatus.ERROR and run.message == "cancelled by ops"
    assert list(run.results.values_list("scenario", flat=True)) == ["zz_first"]
    assert run.counts == {"passed": 1}, "the counts of what ran, as its results say"


def test_a_runner_stopping_mid_scenario_records_the_run_interrupted_and_cleans_up(db, two_scenarios):
    from testing.reserved import reserved_collections
    from testing.tester import RunnerStopped

    def stopped(ctx):
        ctx.collection("left")
        raise RunnerStopped("the test runner stopped (SIGTERM)")

    two_scenarios["first"] = stopped
    run = claimed_run(["zz_first", "zz_second"])
    with pytest.raises(RunnerStopped):
        EmbeddingPipelineOperationsTester(**run.selection).execute(run)
    run.refresh_from_db()
    assert run.status == RunStatus.ERROR and run.message == "interrupted: the test runner stopped (SIGTERM)"
    assert not run.results.exists() and not reserved_collections().exists()


@pytest.mark.parametrize("then", ["breaks a query", "is swallowed"])
def test_a_stop_that_comes_back_as_another_error_or_none_still_stops_the_run(db, two_scenarios, then):
    # The signal raises where the code is: inside a commit the driver answered with its own error (which
    # the scenario's result took), or a scenario's own handler caught it; the run went on to the next.
    from django.db import ProgrammingError

    from testing.tester import RunnerStopped

    stop: list[str] = []

    def signalled(ctx):
        stop.append("the test runner stopped (SIGTERM)")
        if then == "breaks a query":
            raise ProgrammingError("the connection is in a broken state")

    two_scenarios["first"] = signalled
    run = claimed_run(["zz_first", "zz_second"])
    tester = EmbeddingPipelineOperationsTester(**run.selection, stopped=lambda: stop[0] if stop else None)
    with pytest.raises(RunnerStopped):
        tester.execute(run)
    run.refresh_from_db()
    assert run.status == RunStatus.ERROR and run.message == "interrupted: the test runner stopped (SIGTERM)"
    assert list(run.results.values_list("scenario", "outcome")) == (
        [] if then == "breaks a query" else [("zz_first", "passed")]
    )


def test_the_schedules_and_a_configuration_change_only_queue_a_run(db):
    create_collection(name="changed", model="local/hash-8")
    assert tasks.run_scheduled(quick=True) == {"queued": True, "run": TestRun.objects.get().pk}
    refused = tasks.run_config_change(["changed"])
    assert refused["queued"] is False and "is queued" in refused["reason"]
    TestRun.objects.all().delete()
    queued = tasks.run_config_change(["changed", "gone"])
    run = TestRun.objects.get(pk=queued["run"])
    assert run.status == RunStatus.QUEUED and run.trigger == Trigger.CONFIG_CHANGE
    assert run.selection["collections"] == ["changed"] and not run.results.exists()
    create_collection(name="also", model="local/hash-8")
    assert tasks.run_config_change(["also"]) == queued  # the queued change run takes it too
    assert TestRun.objects.get(pk=run.pk).selection["collections"] == ["also", "changed"]


def test_running_needs_its_own_permission_and_reading_needs_view(db):
    viewer = client_with("view_testrun")
    refused = viewer.post(URL, {}, format="json")
    assert refused.status_code == 403 and "run_testrun" in refused.json()["error"]["message"]
    assert viewer.get(URL).status_code == 200
    assert APIClient().get(URL).status_code in (401, 403)
    assert client_with().get(URL).status_code == 403


def test_wait_is_bounded_below_the_web_workers_timeout(db):
    # A wait of 150 s (300 were accepted) outlived gunicorn's 120 s timeout: the sync worker was killed
    # mid-request and the client got gunicorn's HTML 500.
    timeouts = [
        int(re.search(r"--timeout\W+(\d+)", (tools.ROOT / path).read_text()).group(1))
        for path in ("scripts/run.sh", "deploy/base/app/web-deployment.yaml")
    ]
    refused = client_with("run_testrun").post(URL, {"wait": 150}, format="json")
    assert refused.status_code == 400, refused.content
    assert refused.json()["error"]["message"] == "wait: Ensure this value is less than or equal to 50."
    wait = SchemaGenerator().get_schema(public=True)["components"]["schemas"]["RunRequest"]["properties"]["wait"]
    assert wait["maximum"] == 50 < min(timeouts)
    assert not TestRun.objects.exists()


def test_bad_selections_get_a_400_saying_what_to_fix(db):
    client = client_with("run_testrun")
    response = client.post(URL, {"scenarios": ["no_such_scenario"], "collections": ["nope"]}, format="json")
    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert "no_such_scenario" in str(details["scenarios"]) and "nope" in str(details["collections"])
    # A selection of nothing (the regression scenarios are not quick) ran nothing and was recorded as passed.
    response = client.post(URL, {"categories": ["regression"], "quick": True}, format="json")
    assert response.status_code == 400, response.content
    assert "no scenario of regression is in the quick suite" in response.json()["error"]["message"]
    assert not TestRun.objects.exists()


def test_command_prints_json_writes_junit_and_exits_non_zero_on_failure(own_worker, tmp_path, settings):
    own_worker.start()
    out = StringIO()
    call_command(
        "run_ops_tests",
        scenario=["paused_collection_not_claimed"],
        json=True,
        junit_xml=str(tmp_path / "ok.xml"),
        stdout=out,
    )
    body = json.loads(out.getvalue())
    assert body["status"] == "passed" and body["trigger"] == "cli"
    assert JUnitXml.fromfile(str(tmp_path / "ok.xml")).tests == 1

    own_worker.stop()
    settings.EMBEDPORTAL_OPS_TEST_WAIT_SECONDS = 3
    from pipeline.models import WorkerHeartbeat

    WorkerHeartbeat.objects.all().delete()
    with pytest.raises(CommandError, match="1 scenario\\(s\\) failed"):
        call_command(
            "run_ops_tests",
            scenario=["paused_collection_not_claimed"],
            junit_xml=str(tmp_path / "bad.xml"),
            stdout=StringIO(),
        )
    xml = JUnitXml.fromfile(str(tmp_path / "bad.xml"))
    assert xml.failures == 1 and "no pipeline worker is running" in (tmp_path / "bad.xml").read_text()


def test_command_refuses_unknown_selections_and_a_second_run(db):
    with pytest.raises(CommandError, match="unknown categories or scenarios: nope"):
        call_command("run_ops_tests", scenario=["nope"])
    with pytest.raises(CommandError, match="no scenario of load is in the quick suite"):
        call_command("run_ops_tests", category=["load"], quick=True)
    assert not TestRun.objects.exists()
    running = TestRun.objects.start(trigger=Trigger.SCHEDULE_ARGO)
    with pytest.raises(CommandError, match=f"test run {running.pk} \\(schedule-argo\\) is running"):
        call_command("run_ops_tests", scenario=["health_checks_pass"])


def test_flaky_outcome_when_a_scenario_passes_only_on_retry(db):
    from testing import registry

    calls = []

    def wobbly(ctx):
        calls.append(1)
        ctx.check(len(calls) > 1, "first attempt fails")

    registry.scenario("zz_wobbly", "normal", "health", retries=2)(wobbly)
    try:
        run = EmbeddingPipelineOperationsTester(scenarios=["zz_wobbly"]).run()
    finally:
        del registry.REGISTRY["zz_wobbly"]
    (result,) = run.results.all()
    assert result.outcome == "flaky" and result.attempts == 2
    assert [a["outcome"] for a in result.details["attempts"]] == ["failed", "passed"]
    assert run.status == RunStatus.PASSED


# --- configuration-change trigger --------------------------------------------------------------


def test_changing_a_collections_chunking_queues_one_debounced_run(db, django_capture_on_commit_callbacks, settings):
    settings.EMBEDPORTAL_OPS_TEST_CONFIG_DEBOUNCE_SECONDS = 60
    change_configurations(django_capture_on_commit_callbacks, tasks.CONFIG_SCHEDULE)
    (schedule,) = Schedule.objects.filter(name=tasks.CONFIG_SCHEDULE)
    assert schedule.func == tasks.CONFIG_TASK and schedule.schedule_type == Schedule.ONCE
    assert literal_eval(schedule.kwargs) == {"collections": ["a", "b"], "benchmark": True}
    assert schedule.next_run > timezone.now() + timedelta(seconds=50)


def test_pausing_or_saving_unchanged_config_queues_nothing(db, django_capture_on_commit_callbacks):
    collection = create_collection(name="quiet", model="local/hash-8")
    Schedule.objects.filter(name=tasks.CONFIG_SCHEDULE).delete()
    with django_capture_on_commit_callbacks(execute=True):
        collection.paused = True
        collection.save()
        Collection.objects.filter(pk=collection.pk).resume()
    assert not Schedule.objects.filter(name=tasks.CONFIG_SCHEDULE).exists()


def test_api_change_of_provider_options_triggers_too(db, admin_client, django_capture_on_commit_callbacks):
    create_collection(name="viaapi", model="local/hash-8")
    Schedule.objects.filter(name=tasks.CONFIG_SCHEDULE).delete()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.patch(
            "/api/v1/collections/viaapi/", {"chunk_overlap": 4}, content_type="application/json"
        )
    assert response.status_code == 200, response.content
    kwargs = literal_eval(Schedule.objects.get(name=tasks.CONFIG_SCHEDULE).kwargs)
    assert kwargs == {"collections": ["viaapi"], "benchmark": True}


def test_a_changed_settings_fingerprint_at_start_up_queues_a_run(db, settings, django_capture_on_commit_callbacks):
    create_collection(name="one", model="local/hash-8")
    tasks.check_settings_fingerprint()
    Schedule.objects.filter(name=tasks.CONFIG_SCHEDULE).delete()
    assert tasks.check_settings_fingerprint() is False

    settings.EMBEDPORTAL_CLAIM_BATCH = 7
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.check_settings_fingerprint() is True
    assert literal_eval(Schedule.objects.get(name=tasks.CONFIG_SCHEDULE).kwargs) == {"collections": ["one"]}


@pytest.mark.parametrize("worker", ["qcluster", "run_pipeline"])
def test_a_worker_starting_with_changed_settings_queues_a_run_without_a_migrate(
    db, settings, django_capture_on_commit_callbacks, monkeypatch, worker
):
    from embedportal.management.commands import qcluster

    class NoCluster:  # the cluster itself not run: it ends as soon as it started
        sentinel = SimpleNamespace(is_alive=lambda: False, exitcode=0)

        def start(self) -> None:
            pass

    create_collection(name="one", model="local/hash-8")
    tasks.check_settings_fingerprint()
    Schedule.objects.filter(name=tasks.CONFIG_SCHEDULE).delete()
    monkeypatch.setattr(qcluster, "Cluster", NoCluster)
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}

    settings.EMBEDPORTAL_CLAIM_BATCH = 7  # a ConfigMap edit, rolled out without the migrate Job
    try:
        with django_capture_on_commit_callbacks(execute=True):
            call_command(worker, *(["--once"] if worker == "run_pipeline" else []), stdout=io.StringIO())
    finally:  # the command sets its stop handlers in this process: pytest's come back
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert literal_eval(Schedule.objects.get(name=tasks.CONFIG_SCHEDULE).kwargs) == {"collections": ["one"]}


def test_scheduled_runs_are_registered_idempotently(db):
    assert schedules.register() and schedules.register()
    rows = {s.name: (s.func, s.minutes, s.kwargs) for s in Schedule.objects.filter(name__startswith="ops-tests-")}
    assert rows == {
        "ops-tests-quick": (tasks.SCHEDULED_TASK, 60, "quick=True"),
        "ops-tests-full": (tasks.SCHEDULED_TASK, 1440, "quick=False"),
    }


# --- reserved names ----------------------------------------------------------------------------


def test_users_cannot_create_reserved_collections_by_api_command_or_admin(db, admin_client):
    api = admin_client.post(
        "/api/v1/collections/", {"name": "__ops_test_mine", "model": "local/hash-8"}, content_type="application/json"
    )
    assert api.status_code == 400 and "reserved for the operations tests" in api.json()["error"]["message"]
    with pytest.raises(CommandError, match="reserved for the operations tests"):
        call_command("create_collection", "__OPS_TEST_x", model="local/hash-8", stdout=StringIO())
    admin = admin_client.post(
        "/admin/pipeline/collection/add/", {"name": "__ops_test_y", "model": "local/hash-8", "dimensions": 8}
    )
    assert admin.status_code == 200 and b"reserved for the operations tests" in admin.content
    assert not Collection.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("scheduler", "named"), [("django-q2", "schedule-django-q"), ("external", "schedule-argo")])
def test_runs_recorded_as_schedule_get_the_name_of_the_deployments_scheduler(settings, scheduler, named):
    from importlib import import_module

    from django.apps import apps

    migration = import_module("testing.migrations.0003_squashed_0007_benchmark_suite_workload")
    settings.EMBEDPORTAL_SCHEDULER = scheduler
    now = timezone.now()
    old = [
        TestRun.objects.create(trigger=trigger, status="passed", started_at=now, heartbeat_at=now)
        for trigger in ("schedule", "config_change", "api")
    ]
    migration.name_the_scheduler(apps, None)
    assert [TestRun.objects.get(pk=run.pk).trigger for run in old] == [named, "config-change", "api"]
