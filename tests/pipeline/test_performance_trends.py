"""The Performance page's trends from the batch timings: per-stage p50/p95/p99 and docs/s per step,
the capacity they are drawn against, and the performance SLOs' compliance step by step."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from pipeline.collections import create_collection
from pipeline.models import CapacityMeasurement, Collection
from pipeline.percentiles import STAGES
from pipeline.performance import slos
from pipeline.performance.optimizer.figures import db_trend
from tests.factories import capacity_measurement
from tests.pipeline.test_optimizer import batch
from tests.tools import staff

pytestmark = pytest.mark.django_db

PAGE = "/admin/pipeline/optimizationchange/performance/"
# Four steps of a minute over the last four minutes; rows are placed mid-step.
WINDOW, STEPS = 240, 4


def window() -> tuple:
    now = timezone.now()
    return now - timedelta(seconds=WINDOW), now


def test_trend_weights_each_batch_by_its_documents_per_step(hash_collection):
    other = create_collection(name="others", model="local/hash-16", chunk_unit="characters", chunk_size=200)
    # Step 0 stores 4 documents: storage seconds 1, 1, 3, 5 per document.
    batch(hash_collection, 210, documents=2, storage=1.0, chunking=0.1, embedding=0.2, queue_wait=4.0, claim=0.01)
    batch(hash_collection, 200, documents=1, storage=3.0, chunking=0.1, embedding=0.2, queue_wait=6.0, claim=0.03)
    batch(hash_collection, 195, documents=1, storage=5.0, chunking=0.1, embedding=0.2, queue_wait=8.0, claim=0.05)
    # Step 2: one batch of 5; nothing in steps 1 and 3; before the window and other collections: not counted.
    batch(hash_collection, 90, documents=5, storage=0.5)
    batch(hash_collection, 300, documents=7, storage=99.0)
    batch(other, 200, documents=9, storage=99.0)
    since, until = window()

    trend = db_trend(since, until, STEPS, hash_collection.pk)

    assert len(trend["labels"]) == STEPS and trend["step_seconds"] == pytest.approx(60, abs=0.01)
    assert trend["documents"] == [4, 0, 5, 0]
    assert trend["docs_per_second"] == pytest.approx([4 / 60, 0, 5 / 60, 0], rel=1e-3)
    assert set(trend["p50"]) == set(trend["p95"]) == set(trend["p99"]) == set(STAGES)
    # percentile_cont over 1, 1, 3, 5 (positions 1.5, 2.85, 2.97): weighting by documents matters
    # (unweighted, over 1, 3, 5, the median would be 3).
    storage = {q: trend[q]["storage"][0] for q in ("p50", "p95", "p99")}
    assert storage == pytest.approx({"p50": 2.0, "p95": 4.7, "p99": 4.94})
    assert trend["p50"]["total"][0] == pytest.approx(2.3)  # chunking + embedding + storage
    assert trend["p99"]["queue_wait"][0] == pytest.approx(7.94)
    assert trend["p50"]["claim"][0] == pytest.approx(0.02)
    assert trend["p95"]["storage"][2] == pytest.approx(0.5)
    for q in ("p50", "p95", "p99"):  # a step without batches has no percentiles, not zeros
        assert all(trend[q][stage][1] is None and trend[q][stage][3] is None for stage in STAGES)

    everything = db_trend(since, until, STEPS)
    assert everything["documents"] == [13, 0, 5, 0]
    assert everything["p99"]["storage"][0] == pytest.approx(99.0)


def compliance_trend(since, until) -> dict:
    found = slos.evaluate(since, until, STEPS, only={"document_latency", "throughput_per_worker"})
    return {name: [e.ratio for e in steps] for name, steps in found.items()}


def test_slo_compliance_trend_per_step_from_the_batches(hash_collection, settings):
    settings.EMBEDPORTAL_SLO_DOCUMENT_P95_SECONDS = 1.0
    settings.EMBEDPORTAL_SLO_THROUGHPUT_PER_WORKER = 2.0  # local/hash-16 was never measured
    other = create_collection(name="others", model="local/hash-384", chunk_unit="characters", chunk_size=200)
    capacity_measurement("local/hash-384", usl_lambda=10.0)  # its target: 0.8 x 10 = 8 docs/s per worker
    # Step 0: 3 of 4 documents within 1 s; the model's 4 documents took 0.58 + 2.01 busy seconds.
    batch(hash_collection, 210, documents=3, chunking=0.07, embedding=0.3, storage=0.2, claim=0.01)
    batch(hash_collection, 200, documents=1, chunking=0.5, embedding=0.5, storage=1.0, claim=0.01)
    # Step 2: the measured model only, held to its own target: 2 documents in 0.31 busy seconds.
    batch(other, 90, documents=2, chunking=0.1, embedding=0.1, storage=0.1)
    since, until = window()

    trend = compliance_trend(since, until)

    assert trend["document_latency"] == pytest.approx([0.75, None, 1.0, None])
    assert trend["throughput_per_worker"][0] == pytest.approx(4 / 2.59 / 2.0, rel=1e-4)
    assert trend["throughput_per_worker"][2] == pytest.approx(2 / (0.31 * 8.0), rel=1e-4)
    assert trend["throughput_per_worker"][1] is None and trend["throughput_per_worker"][3] is None
    # Each model capped at its own owed documents: the measured model's surplus hides no other's shortfall.
    batch(other, 210, documents=100, chunking=0.1, embedding=0.1, storage=0.1, claim=0.0)
    assert compliance_trend(since, until)["throughput_per_worker"][0] == pytest.approx(
        (4 + 0.3 * 8.0) / (2.59 * 2.0 + 0.3 * 8.0), rel=1e-4
    )
    batch(hash_collection, 150, documents=100, chunking=0.1, embedding=0.1, storage=0.1, claim=0.0)
    assert compliance_trend(since, until)["throughput_per_worker"][1] == 1.0  # capped


def test_the_performance_page_carries_the_trends_and_the_capacity(admin_client, hash_collection, settings):
    settings.EMBEDPORTAL_CAPACITY_WORKERS = 2
    batch(hash_collection, 600, documents=6, storage=0.4)
    capacity_measurement()

    response = admin_client.get(PAGE)

    assert response.status_code == 200
    trend = response.context["trend"]
    assert sum(trend["documents"]) == 6 and len(trend["labels"]) == 24
    assert trend["capacity"]["docs_per_second"] == 8.5 and trend["capacity"]["how"] == "measured"
    assert trend["slos"]["document_latency"].count(1.0) == 1
    page = response.content.decode()
    assert json.loads(page.split('id="performance-trend" type="application/json">')[1].split("</script>")[0]) == trend
    assert 'id="trend-storage"' in page and 'id="trend-throughput"' in page and 'id="trend-slos"' in page
    assert "No data" not in page
    assert (
        f"measured, from the measurement of {CapacityMeasurement.objects.get().measured_at:%Y-%m-%dT%H:%M} UTC)" in page
    )
    # The throughput SLO's target for the measured model: 2 workers at 8.5 docs/s, 4.25 per worker, x 0.8.
    measured = {"model": "local/hash-16", "docs_per_second": 3.4, "from": "capacity measurement"}
    assert response.context["figures"]["throughput_targets"] == [measured]
    assert "local/hash-16: 3.4 docs/s per worker (capacity measurement)" in page


def test_the_performance_page_says_no_data_without_batches(admin_client, hash_collection):
    page = admin_client.get(PAGE).content.decode()

    assert page.count("No data: no batches finished in the window") == 3  # stages, throughput, SLOs
    assert "no capacity measurement yet" in page
    assert "<canvas" not in page


def test_the_performance_page_says_why_a_bulk_loads_batches_show_no_slo_compliance(admin_client, hash_collection):
    # A first load's batches finished, but no SLO judged them: "no batches finished" was false.
    Collection.objects.filter(pk=hash_collection.pk).update(building_generation=1)
    batch(Collection.objects.get(pk=hash_collection.pk), 60)
    page = admin_client.get(PAGE).content.decode()
    assert page.count("No data: no batches finished in the window") == 0
    assert "No data: every batch of the window was a bulk load's" in page


def test_the_performance_page_links_benchmark_trends_only_for_who_may_open_them(client, db):
    operator = staff("view_optimizationchange")
    client.force_login(operator)
    trends = "/admin/testing/benchmarkrun/trends/"
    assert trends not in client.get(PAGE).content.decode() and client.get(trends).status_code == 403

    operator.user_permissions.add(Permission.objects.get_by_natural_key("view_benchmarkrun", "testing", "benchmarkrun"))
    assert trends in client.get(PAGE).content.decode() and client.get(trends).status_code == 200


def test_the_performance_page_gives_each_latency_and_slo_target_its_unit(admin_client, hash_collection, settings):
    settings.EMBEDPORTAL_SLO_THROUGHPUT_PER_WORKER = "20"
    batch(hash_collection, 600, documents=6, storage=0.4)
    page = admin_client.get(PAGE).content.decode()

    stages = page.split('id="stages"')[1].split("</thead>")[0]
    assert "<th>p50 (s)</th><th>p95 (s)</th><th>p99 (s)</th>" in stages
    slos = page.split('id="slos"')[1].split("</table>")[0]
    assert "<td>document_latency</td><td>10.0 s</td>" in slos and "<td>search_latency</td><td>0.05 s</td>" in slos
    assert "<td>throughput_per_worker</td><td>20.0 docs/s per worker" in slos
