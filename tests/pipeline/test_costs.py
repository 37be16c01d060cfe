"""Spend against each collection's monthly budget: written with every batch row, projected at the
recent pace, exported for the alerts, shown in the admin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection

from pipeline import costs, recording
from pipeline.collections import create_collection
from pipeline.models import Collection, CollectionCost
from tests.tools import parse_metrics

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 16, 0, 0, tzinfo=UTC)  # 15 of June's 30 days are left


def spent(collection: Collection, usd: float, at: datetime) -> None:
    result = recording.BatchResult(collection, "w", 10, 0.0, 0.0, 16, embedded=10, cost_usd=usd)
    recording.record(result, at=at)


def test_the_month_spend_starts_again_each_month_and_a_late_batch_stays_in_its_own(hash_collection):
    spent(hash_collection, 3.0, datetime(2026, 5, 31, 23, 0, tzinfo=UTC))
    spent(hash_collection, 2.0, datetime(2026, 6, 1, 0, 30, tzinfo=UTC))
    spent(hash_collection, 1.5, datetime(2026, 6, 2, tzinfo=UTC))
    spent(hash_collection, 4.0, datetime(2026, 5, 31, 23, 59, tzinfo=UTC))  # recorded late: May's
    cost = CollectionCost.objects.get()
    assert (cost.month, cost.month_cost_usd, cost.cost_usd) == (datetime(2026, 6, 1).date(), 3.5, 10.5)


def test_the_projection_extrapolates_the_last_six_hours_to_the_months_end(hash_collection):
    Collection.objects.filter(pk=hash_collection.pk).update(monthly_budget_usd=100.0)
    spent(hash_collection, 40.0, NOW - timedelta(days=3))
    spent(hash_collection, 1.2, NOW - timedelta(hours=2))  # $0.2 an hour lately
    create_collection(name="unbudgeted", model="local/hash-16", chunk_unit="characters", chunk_size=100)
    with connection.cursor() as cur:
        found = {s.collection: s for s in costs.spends(cur, now=NOW)}
    assert set(found) == {"hashes"}  # no budget and no spend: nothing to say about "unbudgeted"
    docs = found["hashes"]
    assert docs.month_usd == pytest.approx(41.2)
    assert docs.projected_usd == pytest.approx(41.2 + 1.2 / 6 * 24 * 15)  # $113.2: over the $100 budget
    assert docs.as_text() == "$41.20 of $100.00 this month (41%), on pace for $113.20"
    assert docs.month_usd < docs.budget_usd  # not over budget yet


def test_metrics_and_admin_show_spend_against_budget(client, admin_client, hash_collection):
    Collection.objects.filter(pk=hash_collection.pk).update(monthly_budget_usd=10.0)
    with time_machine.travel(NOW, tick=False):
        spent(hash_collection, 12.5, NOW - timedelta(hours=1))
        m = parse_metrics(client.get("/metrics").content.decode())
        page = admin_client.get("/admin/pipeline/collection/").content.decode()
    assert m[("embedding_pipeline_cost_month_usd", (("collection", "hashes"),))] == 12.5
    assert m[("embedding_pipeline_cost_budget_usd", (("collection", "hashes"),))] == 10.0
    assert m[("embedding_pipeline_cost_month_projected_usd", (("collection", "hashes"),))] > 12.5
    assert "$12.50 of $10.00 this month (125%)" in page


def test_benchmark_collections_share_one_label_value():
    assert recording.metric_label("benchmark-steady-2w") == recording.metric_label("benchmark-suite-search")
    assert recording.metric_label("benchmark-steady-2w") == "benchmark"
    assert recording.metric_label("docs") == "docs"
