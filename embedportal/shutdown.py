"""Stopping long-running commands on SIGTERM/SIGINT (notes: docs/operations.md, "Module notes")."""

from __future__ import annotations

import ctypes
import math
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Linux: this process is killed when `parent`, the process that started it, dies, even by SIGKILL
    (a django-q2 worker past its task timeout): a benchmark in its own session outlived its killed
    cluster and held the scratch database's lock for 21 minutes."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the call: no signal will come
        os._exit(1)


class SignalStop:
    def __init__(self) -> None:
        self.stopped = False

    def set(self) -> None:
        self.stopped = True

    def is_set(self) -> bool:
        return self.stopped

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until stopped or `timeout` seconds passed (forever if None); True if stopped."""
        deadline = time.monotonic() + (math.inf if timeout is None else timeout)
        while not self.stopped and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))
        return self.stopped


def stop_on_signals() -> SignalStop:
    """A stop flag that SIGTERM and SIGINT set: finish the work in hand, then return."""
    stop = SignalStop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop
