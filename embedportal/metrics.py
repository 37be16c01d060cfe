"""The /metrics scrape: every process's counters and histograms plus the scrape-time database collectors
named by EMBEDPORTAL_METRICS_COLLECTORS."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils.module_loading import import_string
from prometheus_client import REGISTRY, CollectorRegistry, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)

SCRAPE_LATENCY = Histogram(
    "embedding_pipeline_metrics_scrape_seconds",
    "Seconds one /metrics scrape took to assemble (every process's files and the database collectors); "
    "a scrape shows the scrapes before it.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def multiprocess_dir() -> str | None:
    """PROMETHEUS_MULTIPROC_DIR, read from the environment the way prometheus_client reads it."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class AllProcesses:
    """Every process's samples from the multiprocess directory, then the families no process has written
    yet, declared without samples as one process exposes them: on a deployment where no error has
    happened, embedding_pipeline_errors_total is declared, not missing."""

    def __init__(self, path: str) -> None:
        self.written = MultiProcessCollector(None, path=path)

    def collect(self) -> Iterator[Metric]:
        families = list(self.written.collect())
        yield from families
        names = {family.name for family in families}
        for family in REGISTRY.collect():
            # process_* and python_* describe this one process (prometheus_client's own collectors).
            if family.name not in names and not family.name.startswith(("process_", "python_")):
                yield Metric(family.name, family.documentation, family.type, family.unit)


def process_registry() -> CollectorRegistry:
    """Counters and histograms of every process (multiprocess mode), else this process's own."""
    registry = CollectorRegistry()
    # A registry is a collector: in one process, its own metrics.
    registry.register(AllProcesses(path) if (path := multiprocess_dir()) else REGISTRY)
    return registry


# Scrapes in a row (this process) that found the database unreachable and served the process metrics alone.
_scrapes_without_database = 0


def database_answers() -> bool:
    """Whether this scrape can read the database: one connection attempt for all the collectors. Each used
    to try its own and log its own traceback: a scrape during an outage waited one connect timeout per
    collector (past Prometheus' own, losing the process metrics too) and wrote hundreds of log lines.
    The first failed scrape logs its traceback, the next ones one line each."""
    global _scrapes_without_database
    try:
        connection.cursor().close()  # connects (or checks a kept connection); no query is sent
    except DatabaseError as exc:
        _scrapes_without_database += 1
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if _scrapes_without_database == 1:
            logger.error("/metrics without the database gauges, the database is unavailable: %s", message, exc_info=exc)
        else:
            logger.warning(
                "/metrics without the database gauges, the database is still unavailable (scrape %d): %s",
                _scrapes_without_database,
                message,
            )
        return False
    if _scrapes_without_database:
        logger.warning("/metrics: the database answers again after %d scrape(s) without it", _scrapes_without_database)
        _scrapes_without_database = 0
    return True


def scrape_registry() -> CollectorRegistry:
    """A fresh registry per scrape: process metrics plus the database collectors (django-prometheus's
    view drops custom collectors in multiprocess mode); the process metrics alone without the database
    (absent() alerts cover its gauges)."""
    registry = process_registry()
    if not database_answers():
        return registry
    for path in settings.EMBEDPORTAL_METRICS_COLLECTORS:
        registry.register(import_string(path)())
    return registry


def exposition(accept: str | None = None) -> tuple[bytes, str]:
    """The scrape body and its content type (text format 0.0.4 unless the scraper asks for OpenMetrics)."""
    started = time.perf_counter()
    encoder, content_type = choose_encoder(accept)
    body = encoder(scrape_registry())
    SCRAPE_LATENCY.observe(time.perf_counter() - started)
    return body, content_type
