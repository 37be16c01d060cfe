"""`manage.py benchmark`: runs stored with their fingerprints, compared with the same machine's
history (Welch t-test + 5% effect, change points), flagged in the exit code, admin, API and /metrics."""

from __future__ import annotations

import ast
import signal
import subprocess
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError
from django.db import connection, connections
from django.utils import timezone
from django_q.models import Failure, OrmQ, Schedule, Success
from rest_framework.test import APIClient

from embedportal import scratch
from pipeline.choices import ErrorType, WorkerRole
from pipeline.models import Collection, Document, ProviderCircuit, WorkerHeartbeat
from pipeline.queue import IncomingDocument, enqueue
from pipeline.wakeup import kick_workers
from testing import tasks
from testing.benchmarks import regression, suite
from testing.benchmarks import tasks as benchmark_tasks
from testing.choices import RunStatus, Trigger
from testing.models import BenchmarkRun, TestResult, TestRun
from testing.runner import TestRunner
from tests.conftest import database_url, manage, wait_for
from tests.testing.conftest import TINY, benchmark_suite, change_configurations
from tests.tools import client_with

API = "/api/v1/embedding-pipeline-operations/benchmarks"


def history_run(when, version: str, results: dict, machine: str) -> BenchmarkRun:
    return BenchmarkRun.objects.create(
        suite="quick",
        started_at=when,
        duration_seconds=1.0,
        code_version=version,
        machine_fingerprint=machine,
        results=results,
    )


def fig(samples: list[float], better: str) -> dict:
    return suite.figure(samples, better, "x")


@pytest.mark.django_db(transaction=True)
def test_quick_suite_stores_a_run_with_its_fingerprints_and_exports_it(folder, tiny, client):
    result = benchmark_suite("--only", "ingest_steady,ingest_backfill,rerun,search,metrics", corpus=str(folder))

    run = BenchmarkRun.objects.get(pk=result["id"])
    assert set(run.results) == {"ingest_steady", "ingest_backfill", "rerun", "search", "metrics"}
    gated = {"docs_per_second", "ratio_to_floor"}
    assert {n for n, d in run.results["ingest_steady"].items() if not d.get("informational")} == gated
    assert "storage_p95_s" in run.results["ingest_backfill"]  # the per-stage figures: test_benchmark_stage_figures
    assert run.results["rerun"]["rerun_seconds"]["better"] == "lower"
    for figures in run.results.values():
        for data in figures.values():
            assert len(data["samples"]) == TINY.repeats
            assert all(s > 0 for s in data["samples"]) or data.get("informational")
    assert set(run.machine) == {"cpu", "cores", "memory_gb", "python", "postgres"}
    assert run.machine_fingerprint == suite.machine_fingerprint(run.machine) and run.code_version
    assert run.config_fingerprint
    # No history yet on this machine: nothing can be called a regression.
    verdicts = {v["verdict"] for figures in run.comparison.values() for v in figures.values()}
    assert verdicts == {"insufficient_data", "informational"} and run.regressions == 0

    body = client.get("/metrics").content.decode()
    p95 = run.results["search"]["p95_ms"]["median"]
    line = (
        'performance_benchmark_result_embedding_pipeline_operations{benchmark="search",figure="p95_ms",suite="quick"}'
    )
    assert f"{line} {float(p95)}" in body or f"{line} {p95}" in body, body[-2000:]
    assert (
        'performance_benchmark_regression_embedding_pipeline_operations{benchmark="search",figure="p95_ms",'
        'suite="quick"} 0.0'
    ) in body


@pytest.mark.django_db(transaction=True)
def test_a_regression_against_crafted_history_fails_the_command_and_is_flagged(folder, tiny, admin_client):
    machine = suite.machine_fingerprint(suite.machine())
    start = timezone.now() - timedelta(days=10)
    # Six earlier runs where search answered in about a microsecond: today's real search is far slower.
    for i in range(6):
        results = {"search": {"p95_ms": fig([0.001, 0.0011], "lower"), "p50_ms": fig([0.001, 0.0011], "lower")}}
        history_run(start + timedelta(days=i), f"v{i}", results, machine)
    history_run(start, "other-machine", {"search": {"p95_ms": fig([9e9, 9e9], "lower")}}, "elsewhere")

    with pytest.raises(CommandError) as failed:
        benchmark_suite("--only", "search", corpus=str(folder))
    assert failed.value.returncode == 3 and "search.p95_ms" in str(failed.value)

    run = BenchmarkRun.objects.latest()
    verdict = run.comparison["search"]["p95_ms"]
    assert verdict["verdict"] == "regression" and verdict["change"] > 0.05 and verdict["median"] > verdict["limit"]
    assert verdict["baseline_samples"] == 12  # this machine's runs only
    assert run.regressions == 2

    # --no-fail: the same comparison (without the run just stored in the history) exits 0, still flagged.
    run.delete()
    flagged = benchmark_suite("--only", "search", "--no-fail", corpus=str(folder))
    assert flagged["regressions"] == 2
    run = BenchmarkRun.objects.get(pk=flagged["id"])

    page = admin_client.get("/admin/testing/benchmarkrun/?regressed=yes").content.decode()
    assert "regressed" in page and "search.p95_ms" in page
    assert admin_client.get(f"/admin/testing/benchmarkrun/{run.pk}/change/").status_code == 200

    api = client_with("view_benchmarkrun", app="testing")
    listed = api.get(API, {"regressed": "true"}).json()
    assert {r["id"] for r in listed["results"]} >= {run.pk}
    assert all(r["regressions"] > 0 for r in listed["results"])
    assert "search.p95_ms" in listed["results"][0]["regressed"]
    assert api.get(API, {"regressed": "false"}).json()["count"] == 7
    anonymous = APIClient().get(API)
    assert anonymous.status_code == 401


def test_gate_needs_both_significance_and_a_five_percent_effect():
    baseline = [100.0, 101.0, 99.0, 100.5, 99.5, 100.0]
    assert regression.gate([80.0, 81.0, 79.0], baseline, "higher")["verdict"] == "regression"
    assert regression.gate([80.0, 81.0, 79.0], baseline, "lower")["verdict"] == "improvement"
    # Significant but under 5%: not a regression.
    assert regression.gate([97.0, 97.1, 96.9], baseline, "higher")["verdict"] == "same"
    # 10% worse, but the baseline itself swings by more: within its noise.
    noisy = [60.0, 140.0, 100.0, 80.0, 120.0, 100.0]
    assert regression.gate([90.0, 91.0, 89.0], noisy, "higher")["verdict"] == "same"
    assert regression.gate([80.0, 81.0], baseline[:3], "higher")["verdict"] == "insufficient_data"


@pytest.mark.django_db
def test_change_point_detection_dates_the_regression_to_its_first_run():
    start = timezone.now() - timedelta(days=30)
    runs = []
    for i in range(12):
        level = 100.0 if i < 8 else 80.0  # docs/s fell at run 8
        noise = [0.6, -0.4, 0.2, -0.5, 0.3, 0.0, -0.2, 0.4, 0.1, -0.3, 0.5, -0.1][i]
        results = {"ingest_steady": {"docs_per_second": fig([level + noise, level - noise], "higher")}}
        runs.append(history_run(start + timedelta(days=i), f"commit-{i}", results, "m"))
    candidate = BenchmarkRun(
        suite="quick",
        started_at=timezone.now(),
        code_version="commit-now",
        machine_fingerprint="m",
        results={"ingest_steady": {"docs_per_second": fig([80.2, 79.8], "higher")}},
    )

    verdict = regression.compare(candidate, regression.history("m", "quick"))["ingest_steady"]["docs_per_second"]

    [step] = verdict["change_points"]
    assert step["code_version"] == "commit-8"
    assert step["at"] == runs[8].started_at.isoformat()
    assert step["change"] == pytest.approx(-0.2, abs=0.02)
    # The last runs are already at the lower level: the gate against them sees no new change.
    assert verdict["verdict"] == "same"


def production_state(settings_dict: dict) -> tuple:
    """Queue depth, activity, batch and chunk rows, and VACUUMs of production's documents, read on a
    connection of its own (the benchmark's default connection points at the scratch database)."""
    probe = type(connections["default"])(dict(settings_dict), "probe")
    try:
        with probe.cursor() as cur:
            cur.execute(
                "SELECT (SELECT count(*) FROM pipeline_document WHERE status = 'pending'), "
                "(SELECT count(*) FROM pipeline_collectionactivity), (SELECT count(*) FROM pipeline_batchtiming), "
                "(SELECT count(*) FROM pipeline_chunk), "
                "(SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'pipeline_document')"
            )
            return cur.fetchone()
    finally:
        probe.close()


@pytest.mark.django_db(transaction=True)
def test_the_suite_runs_on_the_scratch_database_while_production_has_queued_work(folder, tiny, hash_collection):
    enqueue(hash_collection, [IncomingDocument("waiting", "user work")])
    connections["default"].ensure_connection()
    production = dict(connections["default"].settings_dict)
    before = production_state(production)
    seen = []

    def progress(message: str) -> None:
        with connection.cursor() as cur:
            cur.execute("SELECT current_database()")
            seen.append((message, cur.fetchone()[0], production_state(production)))

    run = suite.run_suite("quick", only=["ingest_steady", "metrics"], progress=progress, corpus=str(folder))

    assert set(run.results) == {"ingest_steady", "rerun", "metrics"} and BenchmarkRun.objects.get() == run
    assert [(m, db) for m, db, _ in seen] == [("ingest_steady ...", scratch.name()), ("metrics ...", scratch.name())]
    assert all(state == before for _, _, state in seen), "production changed while the benchmark ran"
    assert production_state(production) == before and before[0] == 1
    assert list(Collection.objects.values_list("name", flat=True)) == ["hashes"]


def test_the_django_docs_corpus_is_never_downloaded_at_run_time(tmp_path, settings):
    settings.EMBEDPORTAL_CORPUS_DIR = tmp_path
    with pytest.raises(CommandError, match="manage.py fetch_corpus"):
        benchmark_suite("--only", "search")
    assert not any(tmp_path.iterdir())


@pytest.mark.django_db(transaction=True)
def test_a_workload_whose_documents_all_fail_says_so(tmp_path, monkeypatch):
    # A changed collection whose documents all failed made its config-change benchmark end with
    # "ZeroDivisionError: float division by zero" (an adversarial-input soak).
    import psycopg

    from pipeline import storage
    from testing.benchmarks import ingest

    def refuse(*args, **kwargs):
        raise psycopg.errors.ProgramLimitExceeded("string is too long for tsvector")

    monkeypatch.setattr(storage, "store", refuse)  # the forked worker inherits it
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"d{i}.txt")
        paths[-1].write_text(f"text {i} " * 20)
    failed = r"none of the 2 documents was embedded \(bad_request: ProgramLimitExceeded"
    with pytest.raises(ingest.IngestFailed, match=failed):
        ingest.run_once("benchmark-failing", "local/hash-16", ingest.Corpus(tmp_path, paths), workers=1)


@pytest.mark.django_db
def test_a_collection_benchmark_copies_the_collections_fields_and_newest_texts(hash_collection, tmp_path):
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"text {i}") for i in range(3)])
    config, corpus = suite.workload("hashes", tmp_path / "hashes")
    assert config["model"] == "local/hash-16" and config["chunk_size"] == 200 and config["batch_size"] == 16
    assert "name" not in config and "paused" not in config
    assert sorted(p.read_text() for p in corpus.paths) == ["text 0", "text 1", "text 2"]
    with pytest.raises(ValueError, match="no collection named 'gone'"):
        suite.workload("gone", tmp_path / "gone")


# --- the configuration-change workload benchmark, run by the test runner ------------------------


@pytest.mark.django_db
def test_a_configuration_change_queues_one_debounced_run_with_the_benchmark_for_the_test_runner(
    django_capture_on_commit_callbacks, settings
):
    settings.EMBEDPORTAL_OPS_TEST_CONFIG_DEBOUNCE_SECONDS = 60
    _, b = change_configurations(django_capture_on_commit_callbacks, tasks.CONFIG_SCHEDULE)
    with django_capture_on_commit_callbacks(execute=True):
        b.paused = True  # not a configuration change
        b.save()

    # One debounced schedule, the test runner's: no benchmark task of a worker's beside it.
    (schedule,) = Schedule.objects.filter(schedule_type=Schedule.ONCE)
    assert schedule.name == tasks.CONFIG_SCHEDULE and schedule.func == tasks.CONFIG_TASK
    assert ast.literal_eval(schedule.kwargs) == {"collections": ["a", "b"], "benchmark": True}
    assert schedule.next_run > timezone.now() + timedelta(seconds=50)
    # A settings change (scenarios only) merged into it keeps the benchmark wish; alone it has none.
    tasks.schedule_config_run(["c"])
    assert ast.literal_eval(schedule_kwargs()) == {"collections": ["a", "b", "c"], "benchmark": True}
    Schedule.objects.all().delete()
    tasks.schedule_config_run(["c"])
    assert ast.literal_eval(schedule_kwargs()) == {"collections": ["c"]}

    # The queued run takes later changes' collections and their wish (OR-ed), never losing it.
    first = tasks.run_config_change(["a"])
    assert tasks.run_config_change(["b"], benchmark=True) == first
    assert tasks.run_config_change(["a"]) == first
    run = TestRun.objects.get()
    assert run.status == RunStatus.QUEUED and run.trigger == Trigger.CONFIG_CHANGE
    assert run.selection["collections"] == ["a", "b"] and run.selection["benchmark"] is True
    assert run.selection["categories"] == ["regression", "integration"]


def schedule_kwargs() -> str:
    return Schedule.objects.get(name=tasks.CONFIG_SCHEDULE).kwargs


@pytest.mark.django_db
def test_an_old_pending_benchmark_schedule_only_queues_the_runners_run(hash_collection, monkeypatch):
    # A `benchmark-config-change` schedule left by an older version still calls run_benchmark.
    monkeypatch.setattr(subprocess, "Popen", None)  # nothing is started in the worker
    queued = benchmark_tasks.run_benchmark(note="configuration changed: hashes", collections=["hashes"])
    run = TestRun.objects.get(pk=queued["run"])
    assert run.status == RunStatus.QUEUED and run.trigger == Trigger.CONFIG_CHANGE
    assert run.selection["collections"] == ["hashes"] and run.selection["benchmark"] is True


@pytest.mark.django_db(transaction=True)
def test_the_config_change_benchmark_runs_the_collections_own_workload(hash_collection, tmp_path, monkeypatch):
    texts = [f"Collection text {i} about leases and queues. " * (5 + i) for i in range(4)]
    enqueue(hash_collection, [IncomingDocument(f"d{i}", text) for i, text in enumerate(texts)])
    # The runner's own process environment; an empty corpus cache: nothing may be downloaded.
    monkeypatch.setenv("DATABASE_URL", database_url())
    monkeypatch.setenv("EMBEDPORTAL_CORPUS_DIR", str(tmp_path))
    # A pod's multiprocess metrics directory: the benchmark's documents must not be counted there.
    metrics_dir = tmp_path.parent / f"{tmp_path.name}-metrics"
    metrics_dir.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))

    result = benchmark_tasks.run_workload(["hashes"], "configuration changed: hashes")

    assert result["started"], result
    run = BenchmarkRun.objects.get(pk=result["run"])
    assert run.trigger == "config_change" and run.note == "configuration changed: hashes"
    assert run.suite == "workload"  # its own history: the quick suite's comparisons never see it
    figures = run.results["collection:hashes"]
    assert figures["docs_per_second"]["median"] > 0 and figures["ratio_to_floor"]["median"] > 0
    assert not any(tmp_path.iterdir()) and not any(metrics_dir.iterdir())
    # Production: its collection and its four queued documents only.
    assert Document.objects.filter(status="pending").count() == 4 and Collection.objects.count() == 1


@pytest.mark.django_db
def test_the_config_change_benchmark_waits_for_no_provider_whose_circuit_is_open(fake_collection, fake_provider):
    # It runs its own pipeline, which knows nothing of the real circuits: created while the provider hung, it
    # sent five batches that each waited out the timeout, holding a worker slot for 5 minutes (a re-drill).
    ProviderCircuit.objects.record_failure(fake_collection, ErrorType.TIMEOUT, 1, timedelta(seconds=60))
    WorkerHeartbeat.objects.beat(WorkerRole.WORKER, worker="elsewhere:1")  # a live worker: the run goes on
    selection = {"scenarios": ["metrics_used_by_rules_and_dashboards_exist"], "collections": ["fake"]}
    run = TestRun.objects.start(
        RunStatus.RUNNING, trigger=Trigger.CONFIG_CHANGE, selection={**selection, "benchmark": True}
    )

    run = TestRunner().execute(run)

    assert run.message == "workload benchmark not run: the provider circuit of fake (openai/fake-embedder) is open"
    assert run.status == RunStatus.PASSED and run.counts == {"passed": 1}  # the scenarios' verdict, unchanged
    assert fake_provider.requests == [] and not BenchmarkRun.objects.exists()


def runner_benchmarks(process: subprocess.Popen) -> list:
    """The `manage.py benchmark` processes below `process`."""
    import psutil

    return [p for p in psutil.Process(process.pid).children(recursive=True) if "benchmark" in p.cmdline()]


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_saves_makes_one_config_change_run_that_benchmarks_in_the_test_runner(
    hash_collection, django_capture_on_commit_callbacks, tmp_path
):
    """A drill: the benchmark held one of 2 worker slots for 2.5-3 minutes, whose heartbeat then aged
    out (health: "1 worker(s) alive"). With ONE worker slot, a drain kicked during the benchmark now runs."""
    docs = [IncomingDocument(f"d{i}", f"Text {i} about leases and queues. " * 60) for i in range(50)]
    enqueue(hash_collection, docs)
    Collection.objects.filter(pk=hash_collection.pk).update(paused=True)  # production's drains leave them queued
    hash_collection.refresh_from_db()
    Schedule.objects.all().delete()
    for size in (150, 120, 100):  # a burst of saves
        with django_capture_on_commit_callbacks(execute=True):
            hash_collection.chunk_size = size
            hash_collection.save()
    [schedule] = Schedule.objects.all()
    kwargs = ast.literal_eval(schedule.kwargs)
    assert (schedule.func, kwargs) == (tasks.CONFIG_TASK, {"collections": ["hashes"], "benchmark": True})
    # What django-q2's scheduler does once the debounce has passed: the run is only queued.
    queued = tasks.run_config_change(**kwargs)

    empty = tmp_path / "corpus"
    empty.mkdir()
    log = (tmp_path / "processes.log").open("w")
    quiet = {"stdout": log, "stderr": subprocess.STDOUT}
    cluster = manage("qcluster", env={"Q_WORKERS": "1"}, **quiet)
    runner = manage("run_test_runner", "--poll", "0.2", env={"EMBEDPORTAL_CORPUS_DIR": str(empty)}, **quiet)
    try:
        wait_for(lambda: runner_benchmarks(runner), timeout=600)
        scenarios_done = TestResult.objects.filter(run_id=queued["run"]).count()
        # The cluster's one slot is free: a drain kicked now runs and beats while the benchmark runs.
        kicked = timezone.now()
        kick_workers()
        wait_for(lambda: WorkerHeartbeat.objects.alive().filter(beat_at__gt=kicked).exists(), timeout=20)
        assert runner_benchmarks(runner), "the benchmark still runs"
        assert not runner_benchmarks(cluster), "none in the cluster's slot"
        wait_for(lambda: TestRun.objects.get(pk=queued["run"]).finished_at is not None, timeout=600)
    finally:
        for process in (runner, cluster):
            process.terminate()
            process.wait(60)
        log.close()

    run = TestRun.objects.get(pk=queued["run"])
    [benchmark] = BenchmarkRun.objects.all()
    assert run.status in (RunStatus.PASSED, RunStatus.FAILED), run.message
    assert run.message == f"workload benchmark: run {benchmark.pk}"
    assert scenarios_done == run.results.count() > 0  # the scenarios first, then the benchmark
    assert benchmark.suite == "workload" and benchmark.trigger == "config_change"
    assert benchmark.note == "configuration changed: hashes"
    assert benchmark.results["collection:hashes"]["docs_per_second"]["median"] > 0
    assert not any(empty.iterdir()), "nothing was downloaded"
    assert Document.objects.filter(status="pending").count() == 50 and Collection.objects.count() == 1
    tasks_seen = [*OrmQ.objects.all(), *Success.objects.all(), *Failure.objects.all()]
    assert not [t for t in tasks_seen if str(getattr(t, "func", "")).startswith("testing.")]


def scratch_in_use() -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [scratch.name()])
        return cur.fetchone()[0] > 0


@pytest.mark.django_db(transaction=True)
def test_a_stopping_runner_ends_its_benchmark_and_leaves_it_for_the_next_runner(hash_collection, tmp_path):
    """A pod's stop (or Ctrl-C under `make run`) must not wait for a benchmark's minutes: the run is cut
    short, stores nothing, and the same collections' run, benchmark included, is scheduled again."""
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"Text {i} about leases. " * 60) for i in range(50)])
    Collection.objects.filter(pk=hash_collection.pk).update(paused=True)
    selection = {"scenarios": ["metrics_used_by_rules_and_dashboards_exist"], "collections": ["hashes"]}
    run = TestRun.objects.start(
        RunStatus.QUEUED, trigger=Trigger.CONFIG_CHANGE, selection={**selection, "benchmark": True}
    )
    Schedule.objects.all().delete()
    empty = tmp_path / "corpus"
    empty.mkdir()
    WorkerHeartbeat.objects.beat(WorkerRole.WORKER, worker="elsewhere:1")  # a live worker: the run goes on
    log = (tmp_path / "runner.log").open("w")
    env = {"EMBEDPORTAL_CORPUS_DIR": str(empty)}
    runner = manage("run_test_runner", "--poll", "0.2", env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        # Mid-way: the benchmark at work on the scratch database.
        wait_for(lambda: runner_benchmarks(runner) and scratch_in_use(), timeout=120)
        running = runner_benchmarks(runner)
        sent = time.monotonic()
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(30) == 0
        assert time.monotonic() - sent < 10, "the runner did not wait for the benchmark"
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
        log.close()
    import psutil

    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in running)
    assert not BenchmarkRun.objects.exists()
    run.refresh_from_db()
    assert run.status == RunStatus.ERROR and run.message == "interrupted: the test runner stopped (SIGTERM)"
    [schedule] = Schedule.objects.all()
    assert schedule.name == tasks.CONFIG_SCHEDULE
    assert ast.literal_eval(schedule.kwargs) == {"collections": ["hashes"], "benchmark": True}
    assert "benchmark ended: the test runner stopped (SIGTERM)" in (tmp_path / "runner.log").read_text()
