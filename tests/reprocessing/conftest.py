from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import time_machine
from django.utils import timezone


class Clock:
    """Frozen time (time-machine) that a test moves by hand; `now` is what every clock reads."""

    def __init__(self, traveller: time_machine.Coordinates) -> None:
        self._traveller = traveller

    @property
    def now(self) -> datetime:
        return timezone.now()

    def advance(self, delta: timedelta) -> datetime:
        self._traveller.shift(delta)
        return self.now


@pytest.fixture
def clock() -> Iterator[Clock]:
    with time_machine.travel(timezone.now().replace(microsecond=0), tick=False) as traveller:
        yield Clock(traveller)


@pytest.fixture
def waits() -> list[float]:
    """The pipeline's in-batch backoff waits, for a RetryPolicy(sleep=waits.append) to record."""
    return []
