"""Operations-test and benchmark fixtures: a real pipeline worker process on the test database,
a small folder corpus, commands' output, a tiny quick suite, one scenario's run."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from testing.benchmarks import suite
from testing.choices import BenchmarkSuite
from testing.tester import EmbeddingPipelineOperationsTester
from tests.conftest import manage, wait_for


class LiveWorker:
    """`manage.py run_pipeline` in a child process, as in a deployment."""

    # The session's shared worker, once started (own_worker freezes it).
    session: LiveWorker | None = None

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    @property
    def name(self) -> str:
        return f"{socket.gethostname()}:{self.process.pid}"

    def start(self, **env: str) -> LiveWorker:
        from pipeline.models import WorkerHeartbeat

        self.process = manage(
            "run_pipeline",
            env={"EMBEDPORTAL_IDLE_SLEEP": "0.2", "EMBEDPORTAL_RETRY_BASE_SECONDS": "0.2", **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: WorkerHeartbeat.objects.filter(worker=self.name).exists(), timeout=60)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="session")
def _session_worker(django_db_setup, django_db_blocker) -> Iterator[LiveWorker]:
    with django_db_blocker.unblock():
        worker = LiveWorker.session = LiveWorker().start()
    yield worker
    worker.stop()


@pytest.fixture
def live_worker(transactional_db, _session_worker: LiveWorker) -> Iterator[LiveWorker]:
    """The running worker (one per session: starting Django takes seconds). The flush between
    tests empties the heartbeat table, so its row is put back: the process is alive."""
    from pipeline.choices import WorkerRole
    from pipeline.models import WorkerHeartbeat

    if not _session_worker.alive():  # stopped by an own_worker test
        _session_worker.start()
    WorkerHeartbeat.objects.beat(WorkerRole.WORKER, worker=_session_worker.name)
    yield _session_worker


@pytest.fixture
def own_worker(transactional_db) -> Iterator[LiveWorker]:
    """A worker of this test alone, which it may stop or start with other settings. The session's
    shared worker, if running, is stopped first (live_worker starts it again): a stopped worker
    must mean no worker."""
    if LiveWorker.session is not None:
        LiveWorker.session.stop()
    worker = LiveWorker()
    yield worker
    worker.stop()


@pytest.fixture(autouse=True)
def _quick_waits(settings) -> None:
    # A broken path must fail in seconds, not the production minute.
    settings.EMBEDPORTAL_OPS_TEST_WAIT_SECONDS = 30
    settings.EMBEDPORTAL_OPS_TEST_LOAD_DOCUMENTS = 60
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "embedportal.settings")


def command_output(name: str, *args: str, **options: Any) -> str:
    """What `manage.py <name>` printed."""
    out = io.StringIO()
    call_command(name, *args, stdout=out, **options)
    return out.getvalue()


def command_json(name: str, *args: str, **options: Any) -> Any:
    """What `manage.py <name> --json` printed, parsed."""
    return json.loads(command_output(name, *args, json=True, **options))


benchmark_ingest = partial(command_json, "benchmark_ingest")
benchmark_suite = partial(command_json, "benchmark")

# A quick suite small enough for a test: the figures' shape, not their values.
TINY = suite.Sizes(repeats=2, ingest_docs=None, minilm_docs=2, search_chunks=300, search_queries=5, metrics_queued=200)


@pytest.fixture
def tiny(monkeypatch) -> None:
    monkeypatch.setitem(suite.SIZES, BenchmarkSuite.QUICK, TINY)


def run_one(name: str, **kwargs):
    """The result of one scenario run alone (the list when it has several)."""
    run = EmbeddingPipelineOperationsTester(scenarios=[name], **kwargs).run()
    results = list(run.results.all())
    return results[0] if len(results) == 1 else results


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A small folder corpus for the benchmarks: five texts of growing length."""
    root = tmp_path / "corpus"
    root.mkdir()
    for i in range(5):
        (root / f"doc-{i}.txt").write_text(f"Document {i} about queues and leases. " * (30 + 20 * i), encoding="utf-8")
    return root


def change_configurations(capture_on_commit: Any, schedule: str) -> tuple[Any, Any]:
    """Collections a and b, created before `schedule` is cleared, then a's chunk size and b's batch
    size changed: two configuration changes, each committed."""
    from django_q.models import Schedule

    from pipeline.collections import create_collection

    with capture_on_commit(execute=True):
        a = create_collection(name="a", model="local/hash-8")
        b = create_collection(name="b", model="local/hash-8")
    Schedule.objects.filter(name=schedule).delete()
    with capture_on_commit(execute=True):
        a.chunk_size = 128
        a.save()
        b.batch_size = 8
        b.save()
    return a, b
