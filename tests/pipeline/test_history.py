"""The database history: what workers, producers and the heartbeat write, and the hourly roll-up."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.test import override_settings
from django.utils import timezone

from embedportal import schedules
from pipeline import backfill, history, recording, tasks
from pipeline.metrics import FRESHNESS_BUCKETS, LATENCY_BUCKETS
from pipeline.models import BatchTiming, Collection, CollectionActivity, Document
from pipeline.performance import activity
from pipeline.pipeline import EmbeddingIngestionPipeline, RetryPolicy
from pipeline.queue import IncomingDocument, enqueue
from reprocessing import staleness

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def batch(
    collection: Collection,
    *,
    embedded: int = 0,
    failed: int = 0,
    latency_seconds: float = 0.0,
    freshness_lags: tuple[float, ...] = (),
    at: datetime,
) -> None:
    """What a worker records of one batch (pipeline.recording), at a chosen time."""
    result = recording.BatchResult(collection, "test-worker", embedded + failed, 0.0, 0.0, 16, embedded=embedded)
    result.failed, result.total_seconds, result.freshness_lags = failed, latency_seconds, list(freshness_lags)
    recording.record(result, at=at)


def test_the_migration_counts_rows_recorded_before_it_fresh_by_the_buckets_within_the_sla(
    hash_collection, fake_collection
):
    migration = importlib.import_module("pipeline.migrations.0002_squashed_0011_fusion_default_rrf")
    Collection.objects.filter(pk=fake_collection.pk).update(freshness_sla=timedelta(seconds=60))
    for c in (hash_collection, fake_collection):
        batch(c, embedded=3, freshness_lags=(30, 600, 50000), at=T0)
    BatchTiming.objects.update(fresh=0)  # as rows written before the count existed
    with connection.cursor() as cur:
        cur.execute(migration.backfill("pipeline_batchtiming"))
    fresh = dict(BatchTiming.objects.values_list("collection__name", "fresh"))
    assert fresh == {"hashes": 2, "fake": 1}  # 30 s and 10 min within 1 h; 30 s (bucket 60 s) within 60 s


def test_bucket_counts_follow_prometheus_le():
    # A value equal to a bound is in that bound's bucket; above the highest bound is +Inf.
    assert history.bucket_counts((1, 5, 30), [0.2, 1, 1.01, 30, 31, 9999]) == [2, 1, 1, 2]


def test_a_worker_run_adds_up_to_the_documents_it_processed(fake_collection):
    modified = timezone.now() - timedelta(minutes=90)
    # A change made after the collection existed (older content is judged from the collection's creation).
    Collection.objects.filter(pk=fake_collection.pk).update(created_at=modified - timedelta(days=1))
    docs = [IncomingDocument(f"ok{i}", f"text number {i}", modified_at=modified) for i in range(7)]
    docs += [IncomingDocument("bad", "POISON:400 this one fails"), IncomingDocument("fresh", "no source time")]
    enqueue(fake_collection, docs)
    enqueue(fake_collection, [IncomingDocument("ok0", "text number 0")])  # unchanged: not an arrival
    report = EmbeddingIngestionPipeline(retry=RetryPolicy.from_settings(tries=1)).drain()
    assert (report.embedded, report.failed) == (8, 1)

    total = activity.totals(timezone.now() - timedelta(hours=1), timezone.now() + timedelta(minutes=1))
    assert (total.arrived, total.embedded, total.failed) == (9, 8, 1)
    # One latency observation per stored document, all far under 30 s.
    assert sum(total.latency) == 8 and sum(total.latency[: LATENCY_BUCKETS.index(30) + 1]) == 8
    # Seven documents have a source time 90 minutes back: all late for the 1 h freshness SLO.
    assert sum(total.freshness) == 7 and total.fresh == 0
    assert total.freshness[FRESHNESS_BUCKETS.index(7200)] == 7


def test_a_backlog_is_judged_from_its_collections_creation_and_a_reembed_is_not_judged(hash_collection):
    """Content older than its collection (a first load of an existing corpus; `make run`'s sample pages,
    checked out days before) was judged by its age: every page late, and each first start paged the
    freshness burn alerts. A re-embed judged every document again, though each stayed searchable."""

    def judged() -> tuple[int, int]:
        total = activity.totals(timezone.now() - timedelta(hours=1), timezone.now() + timedelta(minutes=1))
        return sum(total.freshness), total.fresh

    pipeline = EmbeddingIngestionPipeline()
    old = hash_collection.created_at - timedelta(days=3)
    enqueue(hash_collection, [IncomingDocument(f"page{i}", f"an old page {i}", modified_at=old) for i in range(3)])
    assert staleness.stale_counts() == {"hashes": 0}, "a first load is stale on arrival"
    assert pipeline.drain().embedded == 3
    assert judged() == (3, 3)

    enqueue(hash_collection, [IncomingDocument("page0", "page 0, changed", modified_at=timezone.now())])
    assert pipeline.drain().embedded == 1
    assert judged() == (4, 4)

    backfill.begin_reembed(hash_collection, chunk_size=150)
    assert pipeline.drain().embedded == 3
    assert judged() == (4, 4)

    # Not embedded within the SLA of the collection's creation, a backlog is stale (and judged late).
    Collection.objects.filter(pk=hash_collection.pk).update(created_at=old + timedelta(minutes=1))
    enqueue(hash_collection, [IncomingDocument("late", "a page the backlog held up", modified_at=old)])
    assert staleness.stale_counts() == {"hashes": 1}
    assert pipeline.drain().embedded == 1
    assert judged() == (5, 4)


def test_concurrent_writers_add_to_one_row_per_minute(hash_collection):
    batch(hash_collection, embedded=3, latency_seconds=0.3, freshness_lags=(10, 4000), at=T0)
    batch(hash_collection, embedded=2, latency_seconds=45, at=T0 + timedelta(seconds=59))
    batch(hash_collection, failed=1, at=T0 + timedelta(seconds=20))
    history.record_arrivals(hash_collection.pk, 7, at=T0 + timedelta(seconds=30))
    history.roll_up_batches(T0 + timedelta(minutes=1))
    row = CollectionActivity.objects.get()
    assert (row.start, row.seconds, row.arrived, row.embedded, row.failed) == (T0, 60, 7, 5, 1)
    assert row.latency[LATENCY_BUCKETS.index(0.5)] == 3 and row.latency[LATENCY_BUCKETS.index(60)] == 2
    assert sum(row.freshness) == 2


def test_batch_rows_are_rolled_up_once_and_read_before_they_are(hash_collection):
    batch(hash_collection, embedded=4, failed=1, latency_seconds=30, freshness_lags=(3600,), at=T0)
    batch(hash_collection, embedded=2, at=T0 + timedelta(minutes=1))
    window = (T0, T0 + timedelta(hours=1))
    before = activity.totals(*window)
    assert (before.embedded, before.failed, sum(before.latency), sum(before.freshness)) == (6, 1, 6, 1)
    # A bound's value is in the bound's bucket, as Prometheus' le counts it.
    assert before.latency[LATENCY_BUCKETS.index(30)] == 4
    assert history.roll_up_batches(T0 + timedelta(minutes=1)) == 1  # only the finished minute
    assert activity.totals(*window) == before
    assert history.roll_up_batches(T0 + timedelta(minutes=5)) == 1
    assert history.roll_up_batches(T0 + timedelta(minutes=5)) == 0
    assert activity.totals(*window) == before
    assert not BatchTiming.objects.filter(rolled_up=False).exists()


def test_the_heartbeat_samples_every_collections_queue_depth(hash_collection, fake_collection):
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"text {i}") for i in range(4)])
    tasks.heartbeat()
    depth = dict(CollectionActivity.objects.values_list("collection__name", "queue_depth"))
    assert depth == {"hashes": 4, "fake": 0}


def test_roll_up_turns_old_minutes_into_hours_and_keeps_totals(hash_collection):
    now = T0 + timedelta(days=10)
    old = T0
    for minute in range(0, 120, 7):  # two hours of minutes, ten days old
        history.record_arrivals(hash_collection.pk, 2, at=old + timedelta(minutes=minute))
        batch(hash_collection, embedded=2, latency_seconds=1.5, at=old + timedelta(minutes=minute))
        recording.record_search(hash_collection, 0.02 * minute, at=old + timedelta(minutes=minute))
    batch(hash_collection, failed=1, freshness_lags=(30,), at=old)
    history.sample_queue_depth(at=old + timedelta(minutes=1))
    Document.objects.create(collection=hash_collection, external_id="p", text="pending", content_hash="x")
    history.sample_queue_depth(at=old + timedelta(minutes=2))
    recent = now - timedelta(hours=1)
    batch(hash_collection, embedded=4, at=recent)
    before = activity.totals(T0 - timedelta(days=1), now)

    with override_settings(EMBEDPORTAL_HISTORY_MINUTE_DAYS=3):
        done = history.roll_up(now)

    assert done.hours_written == 2
    assert activity.totals(T0 - timedelta(days=1), now) == before
    hours = CollectionActivity.objects.filter(seconds=3600).order_by("start")
    assert [h.start for h in hours] == [T0, T0 + timedelta(hours=1)]
    assert hours[0].queue_depth == 1  # the hour's highest sample
    assert [sum(h.searches) for h in hours] == [9, 9] and before.searches[10] == 10  # 10 in (1 s, 2.5 s]
    # Recent minutes stay minutes.
    assert CollectionActivity.objects.filter(seconds=60).get().start == recent
    # Rolling up again changes nothing.
    assert history.roll_up(now).hours_written == 0
    assert activity.totals(T0 - timedelta(days=1), now) == before


def test_rows_older_than_the_retention_are_deleted(hash_collection):
    batch(hash_collection, embedded=1, at=T0)
    batch(hash_collection, embedded=1, at=T0 + timedelta(days=30))
    with override_settings(EMBEDPORTAL_HISTORY_RETENTION_DAYS=20):
        done = history.roll_up(T0 + timedelta(days=31))
    assert done.pruned == 1
    assert list(CollectionActivity.objects.values_list("start", flat=True)) == [T0 + timedelta(days=30)]


def test_bucket_arrays_of_another_size_are_refused(hash_collection):
    with pytest.raises(IntegrityError), transaction.atomic():
        CollectionActivity.objects.create(collection=hash_collection, start=T0, seconds=60, latency=[1], freshness=[1])


def test_reserved_scratch_collections_are_not_user_traffic(hash_collection):
    from pipeline.collections import create_collection
    from pipeline.models import reserved_names

    with reserved_names():
        scratch = create_collection(name="__capacity_test", model="local/hash-16", chunk_unit="characters")
    history.record_arrivals(hash_collection.pk, 3, at=T0)
    history.record_arrivals(scratch.pk, 500, at=T0)
    assert activity.totals(T0, T0 + timedelta(hours=1)).arrived == 3
    assert activity.totals(T0, T0 + timedelta(hours=1), collection_id=scratch.pk).arrived == 500


def test_history_schedule_is_registered_on_migrate():
    from django_q.models import Schedule

    assert schedules.register()
    schedule = Schedule.objects.get(name="pipeline-history-rollup")
    assert (schedule.func, schedule.minutes) == ("pipeline.tasks.roll_up_history", 60)
