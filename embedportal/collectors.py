"""The skeleton every scrape-time database collector shares (EMBEDPORTAL_METRICS_COLLECTORS):
the apps say which families they export and how to fill them; this runs the queries under a
statement timeout and keeps a database failure from failing the whole scrape."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from django.db import DatabaseError, connection, transaction
from django.db.backends.utils import CursorWrapper
from prometheus_client.core import Metric

logger = logging.getLogger(__name__)

# A scrape must not hang on a locked or huge table; Prometheus gives up after ~10 s anyway.
QUERY_TIMEOUT_MS = 5000


@contextmanager
def bounded_queries(timeout_ms: int = QUERY_TIMEOUT_MS) -> Iterator[CursorWrapper]:
    """A transaction whose statements each give up after timeout_ms, and a cursor in it."""
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SELECT set_config('statement_timeout', %s, true)", [str(timeout_ms)])
        yield cur


class DatabaseCollector(ABC):
    """Subclasses name what they measure (`subject`, for the log), build their `families()`
    and `fill()` them. Every family is exported, an empty one as its HELP and TYPE lines, so a
fresh system's scrape already names every series the rules and dashboards read."""

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
