"""Timing GET /metrics over a queued backlog: the suite's `metrics` benchmark and `manage.py benchmark_metrics`."""

from __future__ import annotations

import io
import time
from datetime import timedelta
from typing import Any
from wsgiref.util import setup_testing_defaults

from django.core.handlers.wsgi import WSGIHandler
from django.db import connection
from django.utils import timezone

from pipeline.collections import create_collection
from pipeline.models import Collection, reserved_names
from testing.models import TestRun


def queue_backlog(name: str, documents: int) -> Collection:
    """A collection of `documents` pending documents, paused so no running worker claims them (they
    still count as queued). Not analyzed: the callers time the scrape before and after."""
    with reserved_names():
        collection = create_collection(
            name=name, model="local/hash-16", chunk_unit="characters", chunk_size=200, chunk_overlap=0, paused=True
        )
    with connection.cursor() as cur:
        # One statement for the whole backlog: seconds, not minutes, for 100k rows.
        cur.execute(
            """
            INSERT INTO pipeline_document
                   (collection_id, external_id, text, content_hash, metadata, status, attempts, last_error,
                    lease_owner, enqueued_at, available_at, created_at, updated_at)
            SELECT %s, 'bench-' || n, 'benchmark document ' || n, md5(n::text), '{}'::jsonb, 'pending', 0, '',
                   '', now(), now() - (n || ' seconds')::interval, now(), now()
              FROM generate_series(1, %s) AS n
            """,
            [collection.pk, documents],
        )
    return collection


def test_history(results: int) -> TestRun:
    """One finished test run holding `results` results over the last 90 days (the default retention)
    of 60 scenarios: what a long-lived deployment's scrape must not read row by row."""
    now = timezone.now()
    run = TestRun.objects.create(
        trigger="cli", status="passed", started_at=now - timedelta(days=90), heartbeat_at=now, finished_at=now
    )
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO testing_testresult
                   (run_id, scenario, category, component, target, outcome, attempts, started_at,
                    duration_seconds, message, details)
            SELECT %s, 'scenario_' || n %% 60, 'normal', 'search', '',
                   CASE WHEN n %% 10 = 0 THEN 'failed' ELSE 'passed' END, 1,
                   now() - (n %% 7776000) * interval '1 second', 1.0, '', '{}'::jsonb
              FROM generate_series(1, %s) AS n
            """,
            [run.pk, results],
        )
        cur.execute("ANALYZE testing_testresult")
    return run


def _get(handler: WSGIHandler) -> tuple[int, bytes]:
    """GET /metrics through the whole Django stack (middleware, URL routing, view), in process."""
    environ: dict[str, Any] = {"PATH_INFO": "/metrics", "REMOTE_ADDR": "127.0.0.1", "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(handler(environ, lambda s, headers, exc_info=None: status.append(s)))
    return int(status[0].split()[0]), body


def scrape_times(requests: int) -> tuple[list[float], str]:
    """Milliseconds of `requests` scrapes after a warm-up (connection, imports), and the last body."""
    handler = WSGIHandler()
    _get(handler)
    times = []
    for _ in range(requests):
        t0 = time.perf_counter()
        status, body = _get(handler)
        times.append((time.perf_counter() - t0) * 1000)
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}; is it restricted (EMBEDPORTAL_METRICS_ALLOWED_IPS)?")
    return times, body.decode()
