"""The HNSW index scenario and backfill mode: a first load in progress has no index yet, by design."""

from __future__ import annotations

from django.db import connection

from pipeline.collections import create_collection
from pipeline.models import Collection
from testing.choices import Outcome
from tests.testing.conftest import run_one


def test_a_first_load_in_progress_is_not_a_missing_index_but_a_dropped_one_is(live_worker):
    loading = create_collection(name="loading", model="local/hash-16")
    broken = create_collection(name="broken", model="local/hash-16")
    # What pipeline.backfill.begin_first_load leaves while the load is written.
    Collection.objects.filter(pk=loading.pk).update(building_generation=1)
    with connection.cursor() as cur:
        cur.execute(f"DROP INDEX {loading.index_name}")

    passed = run_one("search_uses_hnsw_index")
    assert passed.outcome == Outcome.PASSED, passed.message

    with connection.cursor() as cur:
        cur.execute(f"DROP INDEX {broken.index_name}")
    failed = run_one("search_uses_hnsw_index")
    assert failed.outcome == Outcome.FAILED
    assert f"broken ({broken.index_name})" in failed.message and "loading" not in failed.message


def test_a_collection_in_its_first_load_is_skipped_as_a_target_not_failed(live_worker):
    # Creating a collection queues its configuration-change run, which came while its first load (656 pages)
    # was written and failed "not planned on its HNSW index" (a drill on a fresh make run).
    loading = create_collection(name="loading", model="local/hash-16")
    Collection.objects.filter(pk=loading.pk).update(building_generation=1)
    with connection.cursor() as cur:
        cur.execute(f"DROP INDEX {loading.index_name}")
    skipped = run_one("search_uses_hnsw_index", collections=["loading"])
    assert skipped.outcome == Outcome.SKIPPED, skipped.message
    assert "loading is in its first load" in skipped.message
    Collection.objects.filter(pk=loading.pk).update(building_generation=None)  # the load done, no index: a failure
    failed = run_one("search_uses_hnsw_index", collections=["loading"])
    assert failed.outcome == Outcome.FAILED and f"loading ({loading.index_name})" in failed.message
