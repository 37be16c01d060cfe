"""Flaky detection, the coverage matrix, the scrape-time metrics and the admin console pages."""

from __future__ import annotations

from datetime import timedelta

from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from testing.choices import RunStatus
from testing.collectors import DatabaseCollector
from testing.coverage import coverage
from testing.flaky import flaky_scenarios
from testing.models import RunnerHeartbeat, TestRun
from tests.factories import stored_result as record


def test_flaky_when_passing_and_failing_on_the_same_code_and_config_ranked_by_flip_rate(db):
    for i, outcome in enumerate(["passed", "failed", "passed", "failed"]):
        record("flippy", outcome, ago=timedelta(hours=10 - i))
    for i, outcome in enumerate(["passed", "passed", "failed", "failed"]):
        record("once", outcome, ago=timedelta(hours=10 - i))
    # A failure after a code change is a regression, not a flake.
    record("changed", "passed", code="v1", ago=timedelta(hours=2))
    record("changed", "failed", code="v2", ago=timedelta(hours=1))
    # Mixed, but older than 14 days.
    record("old", "passed", ago=timedelta(days=20))
    record("old", "failed", ago=timedelta(days=19))
    record("retried", "flaky")
    # A regression scenario measures each target collection: passing on one and failing on another
    # is two collections' results, not a flake.
    record("regression_operator_golden_queries", "passed", target="a", ago=timedelta(hours=2))
    record("regression_operator_golden_queries", "failed", target="b", ago=timedelta(hours=1))

    found = flaky_scenarios()

    assert [f.scenario for f in found] == ["flippy", "once", "retried"]
    assert found[0].flip_rate == 1.0 and found[1].flip_rate == 1 / 3
    assert "same code and configuration" in found[0].reasons[0]
    assert found[2].reasons == ["passed only after a retry in 1 run(s)"]


def test_coverage_counts_cells_whose_scenarios_ran_in_the_last_7_days(db):
    assert coverage().ratio == 0
    record("canary_embedded_and_found", "passed")
    record("provider_5xx_retried_then_deferred", "failed", ago=timedelta(days=8))  # too old
    record("largest_accepted_document", "skipped")  # did not run

    cover = coverage()

    assert cover.cells[("search", "normal")] == ["canary_embedded_and_found"]
    assert (
        cover.cells[("embed", "failure")] == []
        and "provider_5xx_retried_then_deferred" in cover.declared[("embed", "failure")]
    )
    assert cover.ratio == 5 / 30  # enqueue, claim, embed, store, search x normal
    assert "metrics x failure" in cover.uncovered


def test_metrics_are_read_from_the_database_at_scrape_time(db):
    from prometheus_client import CollectorRegistry, generate_latest

    record("canary_embedded_and_found", "passed", duration=3.0)
    record("canary_embedded_and_found", "failed", duration=70.0)
    registry = CollectorRegistry()
    registry.register(DatabaseCollector())
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}

    counts = {
        s.labels["result"]: s.value
        for s in families["test_pass_rate_embedding_pipeline_operations"].samples
        if s.name.endswith("_total")
    }
    assert counts == {"passed": 1.0, "failed": 1.0}
    buckets = {s.labels["le"]: s.value for s in families["test_duration_seconds"].samples if s.name.endswith("_bucket")}
    assert buckets["5.0"] == 1 and buckets["60.0"] == 1 and buckets["120.0"] == 2 and buckets["+Inf"] == 2
    (last,) = families["test_last_run_timestamp_seconds"].samples
    assert last.labels == {"trigger": "schedule-django-q"}
    assert families["test_coverage_ratio"].samples[0].value > 0
    assert families["test_runners_alive"].samples[0].value == 0
    RunnerHeartbeat.objects.beat("pod-a:7")
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert families["test_runners_alive"].samples[0].value == 1


@override_settings(EMBEDPORTAL_METRICS_COLLECTORS=["testing.collectors.DatabaseCollector"])
def test_metrics_endpoint_serves_them(client, db):
    record("canary_embedded_and_found", "passed")
    body = client.get("/metrics").content.decode()
    assert (
        "test_pass_rate_embedding_pipeline_operations_total"
        '{category="normal",result="passed",scenario="canary_embedded_and_found"} 1.0' in body
    )


def test_admin_lists_runs_results_history_flaky_and_coverage(admin_client, db):
    result = record("canary_embedded_and_found", "passed")
    record("flippy", "passed")
    record("flippy", "failed")

    runs = admin_client.get("/admin/testing/testrun/")
    assert runs.status_code == 200 and b"Run tests now" in runs.content
    history = admin_client.get("/admin/testing/testresult/?scenario__exact=flippy")
    assert history.status_code == 200 and history.content.count(b"scenario__exact=flippy") >= 2
    assert b"flippy" in admin_client.get("/admin/testing/testrun/flaky/").content
    cover = admin_client.get("/admin/testing/testrun/coverage/")
    assert b"of the component" in cover.content and b"canary_embedded_and_found" in cover.content
    assert admin_client.get(f"/admin/testing/testrun/{result.run_id}/change/").status_code == 200


def test_admin_run_now_queues_one_run_says_no_runner_and_refuses_a_second(admin_client, db):
    from django_q.models import OrmQ

    nothing = admin_client.post("/admin/testing/testrun/run-now/", {"category": "failure", "quick": "1"}, follow=True)
    assert b"Not started: no scenario of failure is in the quick suite" in nothing.content
    assert not TestRun.objects.exists()  # it was queued with 0 scenarios and recorded as passed
    response = admin_client.post("/admin/testing/testrun/run-now/", {"category": "edge", "quick": "1"}, follow=True)
    run = TestRun.objects.get(status=RunStatus.QUEUED)
    assert response.redirect_chain[-1][0].endswith(f"/testrun/{run.pk}/change/")
    assert b"no test runner is running: start `manage.py run_test_runner`" in response.content
    assert run.selection["categories"] == ["edge"] and run.selection["quick"] is True
    assert not OrmQ.objects.exists()
    second = admin_client.post("/admin/testing/testrun/run-now/", {}, follow=True)
    assert f"test run {run.pk} (api) is queued".encode() in second.content
    listed = admin_client.get("/admin/testing/testrun/")
    assert f"Test run {run.pk} is queued: no test runner is running".encode() in listed.content

    cancel = {"action": "cancel_runs", "_selected_action": [run.pk]}
    done = admin_client.post("/admin/testing/testrun/", cancel, follow=True)
    assert b"Cancelled 1 run(s); 0 had already finished." in done.content
    assert TestRun.objects.get(pk=run.pk).status == RunStatus.ERROR
    RunnerHeartbeat.objects.beat("pod-b:9")
    assert b"pod-b:9" in admin_client.get("/admin/testing/runnerheartbeat/").content


def test_cancel_on_the_queued_filter_counts_the_runs_selected_before_cancelling(admin_client, db):
    run = TestRun.objects.create(
        status=RunStatus.QUEUED, trigger="api", started_at=timezone.now(), heartbeat_at=timezone.now()
    )
    cancel = {"action": "cancel_runs", "_selected_action": [run.pk]}
    # Cancelled, the run leaves the status filter the action's rows were chosen by.
    done = admin_client.post("/admin/testing/testrun/?status__exact=queued", cancel, follow=True)
    assert b"Cancelled 1 run(s); 0 had already finished." in done.content


def test_every_cell_of_the_matrix_is_declared_by_a_scenario(db):
    undeclared = [cell for cell, names in coverage().declared.items() if not names]

    assert undeclared == []
