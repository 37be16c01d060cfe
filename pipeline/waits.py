"""The pipeline's own waits: in-batch retry and deferral delays (RetryPolicy), the circuit's wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from django.conf import settings

from pipeline.embedding import PipelineError


@dataclass(frozen=True)
class RetryPolicy:
    """In-batch retries of transient errors: up to `tries` tries of a batch, waiting
    base * 2^(n-1) seconds (or the provider's Retry-After) between them, never above `max_wait`."""

    tries: int
    base_seconds: float
    max_wait: float
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_settings(cls, **overrides: Any) -> RetryPolicy:
        configured = cls(
            tries=settings.EMBEDPORTAL_BATCH_TRIES,
            base_seconds=settings.EMBEDPORTAL_RETRY_BASE_SECONDS,
            max_wait=settings.EMBEDPORTAL_RETRY_MAX_WAIT,
        )
        return replace(configured, **overrides)

    def delay(self, error: PipelineError, tries: int) -> float:
        """Seconds before the next try: the provider's Retry-After if it sent one, else exponential; capped."""
        wanted = error.retry_after if error.retry_after is not None else self.base_seconds * 2 ** (tries - 1)
        return max(0.0, min(wanted, self.max_wait))

    def defer_delay(self, error: PipelineError, tries: int) -> float:
        """Seconds a deferred batch stays out of the queue: Retry-After in full, else the next backoff step."""
        if error.retry_after is not None:
            return max(0.0, error.retry_after)
        return max(0.0, min(self.base_seconds * 2**tries, self.max_wait))


def circuit_wait(reopenings: int = 0) -> timedelta:
    """How long a circuit stays open before its next probe: doubled per failed probe, capped."""
    base = settings.EMBEDPORTAL_CIRCUIT_OPEN_SECONDS
    return timedelta(seconds=min(base * 2**reopenings, settings.EMBEDPORTAL_CIRCUIT_MAX_OPEN_SECONDS))
