"""Operations test runs beside the worker as `make run` and the worker pods run it (`qcluster`, two
workers): a run waits queued until a test runner process claims it, executes there while the
cluster keeps draining users' documents, and neither process's SIGTERM waits on the other."""

from __future__ import annotations

import ast
import signal
import subprocess
from functools import partial

import pytest
from django.db import OperationalError, connection
from django_q.models import OrmQ, Schedule, Success

from pipeline import queue
from pipeline.choices import DocumentStatus, WorkerRole
from pipeline.models import RESERVED_PREFIX, Document, WorkerHeartbeat
from pipeline.wakeup import DRAIN_TASK
from testing import tasks
from testing.choices import RunStatus, Trigger
from testing.models import NO_RUNNER, RunnerHeartbeat, TestRun
from testing.runner import TestRunner
from tests import tools
from tests.conftest import manage, wait_for

URL = "/api/v1/embedding-pipeline-operations/test"
client_with = partial(tools.client_with, app="testing")
ONE_SCENARIO = {"scenarios": ["paused_collection_not_claimed"]}


def status(run_id: int) -> str:
    return TestRun.objects.get(pk=run_id).status


def stopped_within(process: subprocess.Popen, seconds: float) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=seconds)  # TimeoutExpired fails the test


def test_runs_execute_in_the_runner_process_while_qcluster_keeps_draining(transactional_db, hash_collection, tmp_path):
    client = client_with("run_testrun", "view_testrun")
    log = (tmp_path / "processes.log").open("w")
    quiet = {"stdout": log, "stderr": subprocess.STDOUT}
    cluster = manage("qcluster", env={"Q_WORKERS": "2"}, **quiet)
    runner = None
    try:
        # No runner yet: the run waits queued, and says what to start.
        # The poison scenario's fault provider listens in the runner process; the qcluster's workers call it.
        selection = {"scenarios": ["paused_collection_not_claimed", "poison_document_fails_alone"], "wait": 0}
        first = client.post(URL, selection, format="json")
        assert first.status_code == 202 and first.json()["message"] == f"queued: {NO_RUNNER}"
        first_id = first.json()["id"]
        queue.enqueue(hash_collection, [queue.IncomingDocument(f"user-{i}", f"user document {i}") for i in range(40)])

        runner = manage("run_test_runner", "--poll", "0.2", env={"EMBEDPORTAL_OPS_TEST_WAIT_SECONDS": "20"}, **quiet)
        wait_for(lambda: status(first_id) not in (RunStatus.QUEUED, RunStatus.RUNNING), timeout=120)
        run = TestRun.objects.get(pk=first_id)
        assert run.status == RunStatus.PASSED, (run.message, list(run.results.values_list("message", flat=True)))
        # Users' documents drained meanwhile, by drain tasks; no test run ever went through django-q2.
        wait_for(lambda: not Document.objects.exclude(status=DocumentStatus.EMBEDDED).exists(), timeout=60)
        # A drain task's result is saved by the cluster's monitor once the task returned: after the last
        # document is stored, not with it.
        wait_for(lambda: Success.objects.filter(func=DRAIN_TASK).exists(), timeout=60)
        tasks = [*OrmQ.objects.all(), *Success.objects.all()]
        assert not [t for t in tasks if str(getattr(t, "func", "")).startswith("testing.")]
        assert RunnerHeartbeat.objects.alive().count() == 1

        # The cluster stops at once on SIGTERM: it holds no test run.
        stopped_within(cluster, 30)
        WorkerHeartbeat.objects.all().delete()  # its processes are gone

        # A run claimed with no worker alive waits for one (and kicks); SIGTERM interrupts it at once.
        second = client.post(URL, {"scenarios": ["paused_collection_not_claimed"], "wait": 0}, format="json")
        second_id = second.json()["id"]
        wait_for(lambda: status(second_id) == RunStatus.RUNNING, timeout=30)
        assert stopped_within(runner, 15) == 0
        run = TestRun.objects.get(pk=second_id)
        assert run.status == RunStatus.ERROR and run.message == "interrupted: the test runner stopped (SIGTERM)"
        assert not RunnerHeartbeat.objects.exists()
    finally:
        for process in (cluster, runner):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        log.close()


@pytest.mark.parametrize(
    "trigger, queued_again",
    [(Trigger.CONFIG_CHANGE, {"collections": ["hashes"], "benchmark": True}), (Trigger.API, None)],
)
def test_a_stop_during_the_scenarios_queues_a_config_change_run_again_and_no_other(
    transactional_db, hash_collection, tmp_path, trigger, queued_again
):
    # Only a stop during the benchmark queued a configuration change's run again: stopped during its
    # scenarios, the change was never tested (nobody asks for that run). A person's run stays interrupted.
    Schedule.objects.all().delete()  # creating the collection scheduled its own run
    run = TestRun.objects.start(
        RunStatus.QUEUED, trigger=trigger, selection={**ONE_SCENARIO, "collections": ["hashes"], "benchmark": True}
    )
    # A fresh heartbeat but no worker: the scenario waits for its documents, as long as the wait setting.
    WorkerHeartbeat.objects.beat(WorkerRole.WORKER, worker="elsewhere:1")
    log = (tmp_path / "runner.log").open("w")
    runner = manage("run_test_runner", "--poll", "0.2", stdout=log, stderr=subprocess.STDOUT)
    try:
        # Its documents enqueued: the scenario polls for them now.
        waiting = Document.objects.filter(collection__name__startswith=RESERVED_PREFIX, external_id="moves")
        wait_for(waiting.exists, timeout=60)
        assert status(run.pk) == RunStatus.RUNNING
        assert stopped_within(runner, 15) == 0
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        log.close()

    run.refresh_from_db()
    assert run.status == RunStatus.ERROR and run.message == "interrupted: the test runner stopped (SIGTERM)"
    schedules = {s.name: ast.literal_eval(s.kwargs) for s in Schedule.objects.all()}
    assert schedules == ({tasks.CONFIG_SCHEDULE: queued_again} if queued_again else {})


def test_the_runner_outlives_a_database_restart(transactional_db, tmp_path):
    # Its connections cut as a restart or failover cuts them: the runner exited on the next query,
    # and no run was executed again until someone restarted it (make run never does).
    log = (tmp_path / "runner.log").open("w")
    env = {"EMBEDPORTAL_OPS_TEST_WAIT_SECONDS": "1", "EMBEDPORTAL_IDLE_SLEEP": "0.1"}
    runner = manage("run_test_runner", "--poll", "0.2", env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: RunnerHeartbeat.objects.alive().exists(), timeout=60)
        with connection.cursor() as cur:
            cur.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            )
            assert cur.fetchone()[0] >= 1
        run = TestRun.objects.start(RunStatus.QUEUED, trigger="api", selection=ONE_SCENARIO)
        wait_for(lambda: status(run.pk) not in (RunStatus.QUEUED, RunStatus.RUNNING), timeout=120)
        assert runner.poll() is None, "the runner is still running"
        assert not TestRun.objects.get(pk=run.pk).message.startswith("abandoned")
        assert "database error in the test runner" in (tmp_path / "runner.log").read_text()
    finally:
        runner.kill()
        runner.wait()
        log.close()


@pytest.mark.parametrize("trigger", ["api", "config-change"])
def test_a_run_the_database_broke_off_is_recorded_once_it_answers(db, monkeypatch, settings, trigger):
    settings.EMBEDPORTAL_IDLE_SLEEP = 0.01
    selection = {**ONE_SCENARIO, "collections": ["hashes"], "benchmark": True}
    run = TestRun.objects.start(RunStatus.QUEUED, trigger=trigger, selection=selection)

    def cut(self, claimed):
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(TestRunner, "execute", cut)
    assert TestRunner(poll_seconds=0.01).serve(once=True) == 0
    run.refresh_from_db()
    assert (run.status, run.message) == (RunStatus.ERROR, "interrupted: the database became unreachable; run it again")
    assert not RunnerHeartbeat.objects.exists()
    # A configuration change's run is queued again, as after a stop: nobody else would ask for it.
    queued = [ast.literal_eval(s.kwargs) for s in Schedule.objects.filter(name=tasks.CONFIG_SCHEDULE)]
    assert queued == ([{"collections": ["hashes"], "benchmark": True}] if trigger == "config-change" else [])
