"""Operations-test fixtures: a real pipeline worker process on the test database."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator

import pytest

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
