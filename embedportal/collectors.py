"""The skeleton of every scrape-time database collector (EMBEDPORTAL_METRICS_COLLECTORS): queries under a
statement timeout, and a database failure never fails the whole scrape."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.db.backends.utils import CursorWrapper
from prometheus_client.core import GaugeMetricFamily, Metric

logger = logging.getLogger(__name__)

# A scrape must not hang on a locked or huge table; Prometheus gives up after ~10 s anyway.
QUERY_TIMEOUT_MS = 5000


@contextmanager
def bounded_queries(timeout_ms: int = QUERY_TIMEOUT_MS) -> Iterator[CursorWrapper]:
    """A transaction whose statements each give up after timeout_ms, and a cursor in it."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT set_config('statement_timeout', %s, true)", [str(timeout_ms)])
        yield cur


def fresh(*specs: tuple[Any, ...]) -> staticmethod:
    """A collector's `families`: new families at every scrape, one per (name, help, labels[, class]),
    a GaugeMetricFamily unless the class is given."""
    return staticmethod(
        lambda: tuple(
            kind(name, doc, labels=labels)
            for name, doc, labels, kind in ((*spec, GaugeMetricFamily)[:4] for spec in specs)
        )
    )


class DatabaseCollector(ABC):
    """Subclasses name a `subject` (for the log), build `families()` and `fill()` them. An empty family is
    still exported (HELP and TYPE): a fresh system's scrape names every series the rules read."""

    subject = "database"

    @abstractmethod
    def families(self) -> Sequence[Metric]: ...

    @abstractmethod
    def fill(self, cur: CursorWrapper, *families: Metric) -> None: ...

    def describe(self) -> Iterator[Metric]:
        # Lets prometheus_client register the collector without querying the database.
        yield from self.families()

    def collect(self) -> Iterator[Metric]:
        families = self.families()
        try:
            with bounded_queries() as cur:
                self.fill(cur, *families)
        except DatabaseError:
            # The scrape still serves the process metrics; absent() alerts cover a dead database.
            logger.exception("%s metrics: database query failed", self.subject)
            return
        yield from families
