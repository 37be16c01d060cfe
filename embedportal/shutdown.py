"""Stopping long-running commands (workers, the reprocessing loop, the metrics server) on
SIGTERM/SIGINT.

threading.Event is not safe to set from a signal handler: Event.set() takes the Event's
lock, which the main thread holds for a moment inside every Event.wait(). A signal landing
in that moment runs the handler on top of the wait, Event.set() blocks on a lock its own
thread holds, and the process hangs on SIGTERM for good (its leases then wait for expiry).
SignalStop has the same is_set/wait/set, on a plain attribute and short sleeps.
"""

from __future__ import annotations

import signal
import time


class SignalStop:
    def __init__(self) -> None:
        self.stopped = False

    def set(self) -> None:
        self.stopped = True

    def is_set(self) -> bool:
        return self.stopped

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until stopped or `timeout` seconds passed (forever if None); True if stopped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.stopped:
            left = 0.1 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(left, 0.1))
        return self.stopped


def stop_on_signals() -> SignalStop:
    """A stop flag that SIGTERM and SIGINT set: finish the work in hand, then return."""
    stop = SignalStop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop
