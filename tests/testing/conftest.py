"""Operations-test fixtures: a real pipeline worker process on the test database."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import manage, wait_for


class LiveWorker:
    """`manage.py run_pipeline` in a child process, as in a deployment."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def start(self) -> LiveWorker:
        from pipeline.models import WorkerHeartbeat

        before = set(WorkerHeartbeat.objects.values_list("worker", flat=True))
        self.process = manage(
            "run_pipeline",
            env={"EMBEDPORTAL_IDLE_SLEEP": "0.2", "EMBEDPORTAL_RETRY_BASE_SECONDS": "0.2"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_for(lambda: set(WorkerHeartbeat.objects.values_list("worker", flat=True)) - before, timeout=60)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture
def live_worker(transactional_db) -> Iterator[LiveWorker]:
    worker = LiveWorker().start()
    yield worker
    worker.stop()
