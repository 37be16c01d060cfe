"""Capacity: the USL fit, measure_capacity against the database with real worker processes, the
capacity gauges on /metrics, and capacity_plan on crafted history (time-machine controls now)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.urls import reverse

from pipeline import encoder, history
from pipeline.models import (
    BatchTiming,
    CapacityMeasurement,
    Collection,
    CollectionActivity,
    Document,
    WorkerHeartbeat,
)
from pipeline.performance import capacity
from pipeline.performance.optimizer import analyse
from pipeline.queue import IncomingDocument, enqueue
from tests.factories import capacity_measurement
from tests.pipeline.test_optimizer import saturated_workers

NOW = datetime(2026, 3, 20, 15, 40, tzinfo=UTC)


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def measurement(points: dict[int, float], **fit) -> CapacityMeasurement:
    return CapacityMeasurement.objects.create(
        model="local/hash-384",
        measured_at=NOW - timedelta(days=1),
        documents=100,
        chars_per_document=4000,
        points=[
            {"workers": n, "docs_per_second": x, "documents": 100, "chunks": 400, "seconds": 5}
            for n, x in points.items()
        ],
        **fit,
    )


# --- the Universal Scalability Law ------------------------------------------------------------


def test_usl_fit_recovers_contention_coherence_and_the_peak():
    truth = {n: capacity.usl(n, 10.0, 0.08, 0.02) for n in (1, 2, 4, 8, 16)}
    fit = capacity.fit_usl(truth)
    assert fit.lam == pytest.approx(10.0, rel=1e-3)
    assert fit.sigma == pytest.approx(0.08, rel=1e-2) and fit.kappa == pytest.approx(0.02, rel=1e-2)
    assert fit.peak_workers == pytest.approx((0.92 / 0.02) ** 0.5, rel=1e-2)
    assert fit.determined and "least squares over 5 worker counts" in fit.note


def test_a_fit_without_coherence_cost_claims_no_peak():
    # Contention only (Amdahl): throughput keeps rising towards lambda / sigma, never falls.
    fit = capacity.fit_usl({n: capacity.usl(n, 40.0, 0.6, 0.0) for n in (1, 2, 3, 4)})
    assert fit.kappa == 0.0 and fit.peak_workers is None and fit.determined
    assert "no peak, throughput approaches lambda/sigma = 66.7 docs/s" in fit.note


def test_one_or_two_worker_counts_leave_the_fit_underdetermined():
    one = capacity.fit_usl({1: 12.0})
    assert (one.lam, one.sigma, one.kappa, one.peak_workers) == (12.0, None, None, None)
    assert one.note.startswith("underdetermined: 1 worker count")
    two = capacity.fit_usl({1: 10.0, 2: 16.0})
    # Amdahl through both points: 16 = 2 * 10 / (1 + sigma).
    assert two.sigma == pytest.approx(0.25) and two.kappa == 0.0 and two.peak_workers is None
    assert two.rate(2) == pytest.approx(16.0)
    assert "kappa assumed 0" in two.note and not two.determined
    slower = capacity.fit_usl({1: 2.7, 2: 2.5})
    assert slower.sigma == 1.0 and slower.note.endswith(
        "2 workers were no faster than 1 (2.5 vs 2.7 docs/s): more workers do not help"
    )


@pytest.mark.parametrize("workers", ["0", "-1", "two", "1,,2", "1,1", "64"])
def test_measure_capacity_refuses_bad_worker_counts(workers):
    with pytest.raises(CommandError, match="--workers"):
        call_command("measure_capacity", "--workers", workers)


@pytest.mark.django_db(transaction=True)
def test_measure_capacity_measures_on_the_scratch_database_while_production_works(hash_collection):
    # Production has queued work and a running worker: the measurement runs anyway, beside them.
    enqueue(hash_collection, [IncomingDocument("waiting", "user work")])
    WorkerHeartbeat.objects.beat("worker", worker="other-host:4242")
    activity = list(CollectionActivity.objects.values())  # the enqueue's arrival
    run("measure_capacity", "--model", "local/hash-16", "--workers", "1", "--docs", "10")

    [m] = CapacityMeasurement.objects.all()  # the result, in production
    assert m.points[0]["documents"] == 10
    assert list(Collection.objects.values_list("name", flat=True)) == [hash_collection.name]
    assert list(Document.objects.values_list("status", flat=True)) == ["pending"]
    assert WorkerHeartbeat.objects.filter(worker="other-host:4242").exists()
    assert not BatchTiming.objects.exists() and list(CollectionActivity.objects.values()) == activity


@pytest.mark.django_db(transaction=True)
def test_measure_capacity_stores_a_measurement_and_exports_the_gauges(client):
    body = json.loads(run("measure_capacity", "--model", "local/hash-384", "--workers", "1", "--docs", "40", "--json"))
    m = CapacityMeasurement.objects.get()
    assert body["id"] == m.pk and m.model == "local/hash-384"
    [point] = m.points
    assert point["workers"] == 1 and point["documents"] == 40 and point["docs_per_second"] > 0
    assert m.usl_lambda == point["docs_per_second"] and m.usl_sigma is None
    assert m.fit_note.startswith("underdetermined")
    # The scratch collection is gone, and so are its history rows and the worker's heartbeat.
    assert not Collection.objects.exists()
    assert not WorkerHeartbeat.objects.exists()

    with override_settings(EMBEDPORTAL_CAPACITY_WORKERS=1):
        scrape = client.get("/metrics").content.decode()
    rate = point["docs_per_second"]
    assert (
        'embedding_pipeline_capacity_docs_per_second{how="measured",model="local/hash-384",replicas="1",'
        f'workers="1"}} {rate}' in scrape
    )
    assert 'embedding_pipeline_capacity_measured_timestamp_seconds{model="local/hash-384"}' in scrape


@pytest.mark.django_db
def test_capacity_is_one_pod_times_the_most_replicas_for_the_slowest_model_in_use(hash_collection):
    measurement({1: 10.0, 2: 16.0}, usl_lambda=10.0, usl_sigma=0.25, usl_kappa=0.0)  # local/hash-384
    slow = measurement({1: 3.0, 2: 5.0}, usl_lambda=3.0, usl_sigma=0.2, usl_kappa=0.0)
    slow.model = "local/hash-16"
    slow.save()
    with override_settings(EMBEDPORTAL_CAPACITY_WORKERS=2, EMBEDPORTAL_MAX_WORKER_REPLICAS=10):
        cap = capacity.current()  # hash_collection uses local/hash-16: the slower model is the one in use
        assert (cap.model, cap.per_pod, cap.replicas, cap.docs_per_second) == ("local/hash-16", 5.0, 10, 50.0)
        hash_collection.delete()  # nothing in use: the slowest measured model
        assert capacity.current().model == "local/hash-16"
        Collection.objects.create(name="fast", model="local/hash-384", dimensions=384)
        assert capacity.current().docs_per_second == 160.0


@pytest.mark.django_db
def test_capacity_at_the_deployed_worker_count():
    measurement({1: 10.0, 2: 16.0}, usl_lambda=10.0, usl_sigma=0.25, usl_kappa=0.0)
    with override_settings(EMBEDPORTAL_CAPACITY_WORKERS=2):
        assert (capacity.current().docs_per_second, capacity.current().how) == (16.0, "measured")
    with override_settings(EMBEDPORTAL_CAPACITY_WORKERS=4):
        assert (
            capacity.current().docs_per_second == pytest.approx(40 / 1.75, rel=1e-3) and capacity.current().how == "usl"
        )


@pytest.mark.django_db(transaction=True)
def test_a_local_model_measurement_records_the_runtime_it_ran_on():
    body = json.loads(
        run("measure_capacity", "--model", capacity.LOCAL_MODEL, "--workers", "1", "--docs", "10", "--json")
    )
    serving = encoder.label(encoder.current())
    assert serving.startswith("openvino/")
    assert body["local_encoder"] == serving == CapacityMeasurement.objects.get().local_encoder
    assert capacity.runtime("local/hash-16") == ""


@pytest.mark.django_db
def test_only_measurements_of_the_serving_runtime_size_the_plan_and_the_optimizer(hash_collection, admin_client):
    serving = encoder.label(encoder.current())
    two_workers = [{"workers": 2, "docs_per_second": 9.0, "documents": 100, "chunks": 300, "seconds": 10}]
    ours = capacity_measurement(capacity.LOCAL_MODEL, local_encoder=serving, measured_at=NOW - timedelta(days=2))
    ours.points = two_workers + [{**two_workers[0], "workers": 1, "docs_per_second": 5.0}]
    ours.usl_lambda, ours.usl_sigma, ours.usl_kappa = 5.0, 0.1, 0.0
    ours.save()
    # Newer, but measured while PyTorch served: it must not size a deployment now on OpenVINO.
    capacity_measurement(capacity.LOCAL_MODEL, local_encoder="torch/f32", measured_at=NOW - timedelta(days=1))
    saturated_workers(hash_collection)  # saturated workers: the optimizer proposes a third from the fit

    with override_settings(EMBEDPORTAL_CAPACITY_WORKERS=2):
        cap = capacity.current()
        text = run("capacity_plan")
        workers = next(r for r in analyse().recommendations if r.id == "workers")
        pages = [
            admin_client.get(reverse(f"admin:pipeline_{page}")).content.decode() for page in ("slos", "performance")
        ]
    assert (cap.docs_per_second, cap.runtime, cap.measured_at) == (9.0, serving, ours.measured_at)
    assert (
        f"capacity: 9.000 docs/s ({capacity.LOCAL_MODEL} on {serving}, 9.000 docs/s per pod of 2 workers x 1 pods, "
        "measured" in text
    )
    assert f"capacity measurement of {ours.measured_at:%Y-%m-%d} on {serving})" in workers.expected_effect
    assert all(f"({capacity.LOCAL_MODEL} on {serving}, " in page for page in pages)

    ours.delete()
    plan = capacity.plan()
    assert plan.capacity is None and capacity.latest() is None
    assert (
        f"no capacity measurement on the runtime serving now ({serving}); {capacity.LOCAL_MODEL} was measured on "
        "torch/f32: run manage.py measure_capacity"
    ) in plan.needs


# --- capacity_plan ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_capacity_plan_with_too_little_history_says_what_it_needs(hash_collection):
    for hour in range(5):
        history.record_arrivals(hash_collection.pk, 100, at=NOW - timedelta(hours=hour, minutes=50))
    with time_machine.travel(NOW, tick=False):
        plan = json.loads(run("capacity_plan", "--json"))
        text = run("capacity_plan")
    assert (
        plan["enough_history"] is False and plan["exceeds_on"] is None and plan["trend_docs_per_second_per_day"] is None
    )
    assert plan["needs"] == (
        "needs at least 3 days of hourly arrivals, have 5 hours; "
        "no capacity measurement: run manage.py measure_capacity"
    )
    assert "needs at least 3 days of hourly arrivals, have 5 hours" in text
    assert plan["arrivals_last_hour_docs_per_second"] == pytest.approx(100 / 3600, abs=1e-4)


@pytest.mark.django_db
def test_capacity_plan_projects_a_rising_trend_and_the_workers_needed(hash_collection):
    # Ten days of traffic whose busiest hour grows by 360 documents (0.1 docs/s) a day, from 1 docs/s.
    start = history.hour_of(NOW) - timedelta(days=10)
    for day in range(10):
        for hour in range(24):
            at = start + timedelta(days=day, hours=hour)
            arrived = 3600 + 360 * day if hour == 14 else 100
            history.record_arrivals(hash_collection.pk, arrived, at=at)
    measurement({1: 1.5, 2: 2.7, 4: 4.4}, usl_lambda=1.5, usl_sigma=0.1, usl_kappa=0.01)
    with override_settings(EMBEDPORTAL_CAPACITY_WORKERS=2), time_machine.travel(NOW, tick=False):
        plan = capacity.plan(headroom=0.3)
        text = run("capacity_plan", "--headroom", "0.3")

    assert plan.enough_history and len(plan.daily_peaks) == 10
    assert plan.trend_per_day == pytest.approx(0.1) and plan.peak == pytest.approx(1.9)
    assert plan.capacity.docs_per_second == 2.7
    assert plan.headroom == pytest.approx(1 - 1.9 / 2.7)
    # The peak reaches 2.7 docs/s 8 days after the last one (1.9 + 0.1 * 8).
    assert plan.exceeds_on == plan.daily_peaks[-1][0] + timedelta(days=8)
    # 1.9 / 0.7 = 2.71 docs/s needs the third worker by the fit (X(2) = 2.70...).
    fit = capacity.UslFit(1.5, 0.1, 0.01, "")
    assert plan.workers_needed == 3 and fit.rate(3) >= 1.9 / 0.7 > fit.rate(2)
    assert f"projected to exceed capacity on: {plan.exceeds_on.isoformat()}" in text
    assert "workers needed: 3" in text


@pytest.mark.django_db
def test_a_flat_trend_never_exceeds_and_an_unreachable_rate_says_so(hash_collection):
    start = history.hour_of(NOW) - timedelta(days=4)
    for hour in range(4 * 24):
        history.record_arrivals(hash_collection.pk, 36000, at=start + timedelta(hours=hour))
    measurement({1: 5.0, 2: 8.0, 4: 9.0}, usl_lambda=5.0, usl_sigma=0.3, usl_kappa=0.05)
    with override_settings(EMBEDPORTAL_CAPACITY_WORKERS=4), time_machine.travel(NOW, tick=False):
        plan = capacity.plan(headroom=0.3)
    assert plan.trend_per_day == pytest.approx(0.0, abs=1e-9) and plan.exceeds_on is None
    assert plan.exceeded_now and plan.headroom == pytest.approx(1 - 10 / 9)
    assert plan.workers_needed is None and "no worker count reaches" in plan.workers_note


def test_headroom_must_be_a_share():
    with pytest.raises(CommandError, match="--headroom"):
        call_command("capacity_plan", "--headroom", "1.5")


def test_daily_periods_end_at_the_current_hour():
    assert (
        capacity.Plan(
            NOW, 0.3, True, daily_peaks=[(date(2026, 3, 1), 1.0)], trend_per_day=0.5, trend_intercept=1.0
        ).trend_at(date(2026, 3, 5))
        == 3.0
    )
