"""SLO compliance, error budget and burn rates computed from crafted database history."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from pipeline import history
from pipeline.metrics import CALL_BUCKETS, LATENCY_BUCKETS
from pipeline.performance import slos
from tests.factories import capacity_measurement
from tests.pipeline.test_history import batch

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 12, 30, 15, tzinfo=UTC)


def by_name(now=NOW, **kwargs) -> dict[str, slos.Status]:
    return {s.name: s for s in slos.statuses(now, **kwargs)}


def test_objectives_come_from_the_one_spec_and_thresholds_match_its_queries():
    data = yaml.safe_load(slos.SPEC.read_text())
    assert [(o.name, o.objective) for o in slos.spec().slos] == [(s["name"], s["objective"]) for s in data["slos"]]
    every = [*data["slos"], *data["performance_slos"]]
    assert [s.objective for s in slos.statuses(NOW)] == [round(s["objective"] / 100, 6) for s in every]
    queries = {s["name"]: s["sli"]["events"] for s in data["slos"]}
    latency_le = re.search(r'le=~"(\d+)\(', queries["latency"]["error_query"])[1]
    assert int(latency_le) == slos.LATENCY_THRESHOLD_SECONDS and slos.LATENCY_THRESHOLD_SECONDS in LATENCY_BUCKETS
    # Freshness has no global threshold: the counter of documents judged against their own collection's SLA.
    assert queries["freshness"] == {
        "error_query": 'sum(rate(embedding_pipeline_freshness_judged_total{within_sla="false"}[{{.window}}]))',
        "total_query": "sum(rate(embedding_pipeline_freshness_judged_total[{{.window}}]))",
    }


def test_a_window_without_traffic_is_no_data(hash_collection):
    status = by_name()
    for s in status.values():
        assert s.compliance == {"1h": None, "1d": None, "30d": None}
        assert s.burn_rates == {"1h": None, "6h": None}
        assert s.budget_left is None and s.met is None
    # Traffic two hours ago: the last hour is still no data, the day is not.
    batch(hash_collection, embedded=10, latency_seconds=1, at=NOW - timedelta(hours=2))
    failures = by_name()["failures"]
    assert failures.compliance == {"1h": None, "1d": 1.0, "30d": 1.0}
    assert failures.burn_rates == {"1h": None, "6h": 0.0}
    assert failures.budget_left == 1.0
    # Freshness has no events at all: these documents had no source time.
    assert by_name()["freshness"].compliance["30d"] is None


def test_compliance_budget_and_burn_rate_per_slo(hash_collection):
    c = hash_collection
    # Last 30 minutes: 1000 documents, 4 failed, 60 slower than 30 s, 20 later than 1 h.
    batch(
        c,
        embedded=940,
        latency_seconds=2,
        freshness_lags=(100,) * 980 + (5000,) * 20,
        at=NOW - timedelta(minutes=30),
    )
    batch(c, embedded=60 - 4, latency_seconds=45, at=NOW - timedelta(minutes=29))
    batch(c, failed=4, at=NOW - timedelta(minutes=29))
    # Ten days ago: a clean day of 9000 documents.
    batch(c, embedded=9000, latency_seconds=1, freshness_lags=(10,) * 9000, at=NOW - timedelta(days=10, minutes=1))
    s = by_name()

    failures = s["failures"]
    assert failures.compliance["1h"] == pytest.approx(996 / 1000)
    assert failures.burn_rates["1h"] == pytest.approx((4 / 1000) / 0.001)  # 4x: a ticket, not a page
    assert failures.compliance["30d"] == pytest.approx(1 - 4 / 10000)
    assert failures.budget_left == pytest.approx(1 - (4 / 10000) / 0.001)
    assert failures.met is True

    latency = s["latency"]
    assert latency.windows["1h"].bad == 56 and latency.windows["1h"].total == 996
    assert latency.burn_rates["6h"] == pytest.approx((56 / 996) / 0.05)
    assert latency.compliance["30d"] == pytest.approx(1 - 56 / 9996)

    freshness = s["freshness"]
    assert freshness.compliance["1d"] == pytest.approx(0.98)
    assert freshness.budget_left == pytest.approx(1 - (20 / 10000) / 0.01)
    assert freshness.met is True
    assert freshness.as_dict()["events"]["30d"] == {"good": 9980, "total": 10000}


def test_a_missed_slo_has_a_negative_budget(hash_collection):
    batch(hash_collection, embedded=90, failed=10, at=NOW - timedelta(days=3))
    failures = by_name()["failures"]
    assert failures.met is False
    assert failures.budget_left == pytest.approx(1 - 0.1 / 0.001)
    assert failures.compliance["1d"] is None


def test_windows_reach_into_rolled_up_hours(hash_collection):
    batch(hash_collection, embedded=5, failed=5, at=NOW - timedelta(days=20))
    history.roll_up(NOW)
    assert by_name()["failures"].compliance["30d"] == 0.5


def test_one_collection_or_all_user_collections(hash_collection, fake_collection):
    batch(hash_collection, embedded=10, at=NOW)
    batch(fake_collection, failed=10, at=NOW)
    assert by_name()["failures"].compliance["1h"] == 0.5
    assert by_name(collection_id=hash_collection.pk)["failures"].compliance["1h"] == 1.0


def test_freshness_is_judged_against_each_collections_own_sla(hash_collection, fake_collection):
    # Two collections, SLAs of 60 s and 1 h, each with ten documents embedded 10 minutes after their
    # source update: late for the first, on time for the second.
    fake_collection.freshness_sla = timedelta(seconds=60)
    fake_collection.save(update_fields=["freshness_sla"])
    for c in (fake_collection, hash_collection):
        batch(c, embedded=10, freshness_lags=(600,) * 10, at=NOW - timedelta(minutes=5))
    assert by_name(collection_id=fake_collection.pk)["freshness"].windows["1h"] == slos.Events(0, 10)
    assert by_name(collection_id=hash_collection.pk)["freshness"].windows["1h"] == slos.Events(10, 10)
    everything = by_name()["freshness"]
    assert everything.compliance["1h"] == 0.5 and everything.met is False
    # The roll-ups into minutes and hours keep the count.
    history.roll_up(NOW + timedelta(days=8))
    assert by_name(NOW + timedelta(days=8))["freshness"].windows["30d"] == slos.Events(10, 20)


def test_the_slo_page_judges_a_collection_by_its_own_sla(client, hash_collection, fake_collection, settings):
    settings.EMBEDPORTAL_CAPACITY_WORKERS = 2
    capacity_measurement()  # 8.5 docs/s with 2 workers
    fake_collection.freshness_sla = timedelta(seconds=60)
    fake_collection.save(update_fields=["freshness_sla"])
    now = history.minute_of(datetime.now(UTC))
    for c in (fake_collection, hash_collection):
        batch(c, embedded=10, freshness_lags=(600,) * 10, at=now)
    user, token = api_user("view_collectionactivity")

    def figures(query: str) -> dict:
        return client.get(f"/api/v1/slos/?range=1h{query}", HTTP_AUTHORIZATION=f"Token {token}").json()

    def freshness(body: dict) -> dict:
        return next(s for s in body["slos"] if s["name"] == "freshness")["events"]["1h"]

    strict, hourly, every = figures("&collection=fake"), figures("&collection=hashes"), figures("")
    assert (freshness(strict), freshness(hourly), freshness(every)) == (
        {"good": 0, "total": 10},
        {"good": 10, "total": 10},
        {"good": 10, "total": 20},
    )
    assert strict["series"]["freshness_percent"][-1] == 0 and hourly["series"]["freshness_percent"][-1] == 100
    # The queue bound: 8.5 docs/s drained within the collection's SLA; for all, within the tightest.
    assert (strict["freshness_sla_seconds"], hourly["freshness_sla_seconds"], every["freshness_sla_seconds"]) == (
        60,
        3600,
        60,
    )
    assert (strict["series"]["queue_bound"], hourly["series"]["queue_bound"], every["series"]["queue_bound"]) == (
        510,
        30600,
        510,
    )
    # The admin page: the chosen collection's freshness, and the SLA its charts are drawn against.
    client.force_login(user)
    page = client.get("/admin/pipeline/collection/slos/?range=1h&collection=fake")
    freshness_row = next(row for row in page.context["slo_rows"] if row["name"] == "freshness")
    assert freshness_row["compliance"][0] == ("1h", "0.00%", False) and freshness_row["state"] == "missed"
    assert "embedded within the collection's SLA (60 s)" in page.content.decode()


def test_the_performance_slos_come_from_the_same_evaluator(hash_collection, fake_collection, settings):
    from pipeline import recording

    settings.EMBEDPORTAL_SLO_DOCUMENT_P95_SECONDS = 1.0
    settings.EMBEDPORTAL_SLO_THROUGHPUT_PER_WORKER = "20"
    batch(hash_collection, embedded=10, latency_seconds=0.5, at=NOW - timedelta(minutes=5))
    batch(hash_collection, embedded=30, latency_seconds=5, at=NOW - timedelta(hours=3))
    recording.record_search(hash_collection, 0.01, "api", at=NOW - timedelta(minutes=5))
    recording.record_search(fake_collection, 9.0, "api", at=NOW - timedelta(minutes=5))
    s = by_name()
    latency = s["document_latency"]
    assert latency.compliance == {"1h": 1.0, "1d": 0.25, "30d": 0.25}
    assert latency.burn_rates["6h"] == pytest.approx(0.75 / 0.05) and latency.met is False
    # Every collection's searches in the window; one collection's alone when named.
    assert s["search_latency"].compliance["1h"] == 0.5
    assert by_name(collection_id=hash_collection.pk)["search_latency"].compliance["30d"] == 1.0
    # 10 documents in 0.5 busy seconds: over 20 docs/s, capped; an objective of 100% leaves no budget to burn.
    throughput = s["throughput_per_worker"]
    assert throughput.compliance["1h"] == 1.0 and throughput.burn_rates == {"1h": None, "6h": None}
    assert throughput.compliance["1d"] == pytest.approx(40 / 5.5 / 20)


def test_search_latency_is_judged_over_a_sliding_window_per_collection(hash_collection, fake_collection):
    from pipeline import recording

    target = slos.target("search_latency")
    assert target in CALL_BUCKETS  # the Prometheus rule's `le` and the history's bucket
    for seconds in (0.01, 0.02, 0.05, 0.2):  # 3 of 4 within 50 ms (a bound is within), 10 minutes ago
        recording.record_search(hash_collection, seconds, "api", at=NOW - timedelta(minutes=10))
    for _ in range(5):  # slow, three hours ago: in the day, not in the hour
        recording.record_search(hash_collection, 1.0, "api", at=NOW - timedelta(hours=3))
    recording.record_search(fake_collection, 2.5, "cli", at=NOW - timedelta(minutes=10))
    recording.record_search(hash_collection, 0.01, "api", at=NOW + timedelta(minutes=2))  # after the window

    every, hashed = by_name()["search_latency"], by_name(collection_id=hash_collection.pk)["search_latency"]

    assert every.windows["1h"] == slos.Events(3, 5) and every.windows["1d"] == slos.Events(3, 10)
    assert hashed.compliance == {"1h": 0.75, "1d": 3 / 9, "30d": 3 / 9}
    steps = slos.evaluate(NOW - timedelta(hours=4), NOW, 4, only={"search_latency"})["search_latency"]
    assert [e.total for e in steps] == [5, 0, 0, 5]  # 09:30:00's minute row starts in [08:30:15, 09:30:15)


# --- GET /api/v1/slos/ and the admin page -------------------------------------------------------


def api_user(*codenames: str):
    """A staff user holding the permissions (and seeing every collection, as an operator), and a token."""
    from tests.tools import api_token, user_with

    user = user_with(*codenames, is_staff=True)
    return user, api_token(user)


def test_the_api_needs_authentication_and_the_view_permission(client):
    assert client.get("/api/v1/slos/").status_code in (401, 403)
    _, token = api_user("view_document")
    refused = client.get("/api/v1/slos/", HTTP_AUTHORIZATION=f"Token {token}")
    assert refused.status_code == 403
    assert "pipeline.view_collectionactivity" in refused.json()["error"]["message"]
    _, token = api_user("view_collectionactivity")
    assert client.get("/api/v1/slos/", HTTP_AUTHORIZATION=f"Token {token}").status_code == 200


def test_the_api_gives_the_pages_figures(client, hash_collection, monkeypatch):
    from types import SimpleNamespace

    from django.test import override_settings

    from pipeline.performance import slo_page

    user, token = api_user("view_collectionactivity")
    started = datetime.now(UTC)
    # One clock for the API and the admin page below: a minute turning between them shifts the series.
    monkeypatch.setattr(slo_page, "timezone", SimpleNamespace(now=lambda: started))
    now = history.minute_of(started)
    history.record_arrivals(hash_collection.pk, 12, at=now)
    batch(hash_collection, embedded=10, failed=2, latency_seconds=40, at=now)
    body = client.get("/api/v1/slos/?range=1h", HTTP_AUTHORIZATION=f"Token {token}").json()
    # As the spec writes them: 99.9 / 100 was sent as 0.9990000000000001.
    assert [s["objective"] for s in body["slos"]] == [0.99, 0.999, 0.95, 0.95, 0.95, 1.0]
    failures = next(s for s in body["slos"] if s["name"] == "failures")
    assert failures["compliance"]["1h"] == pytest.approx(10 / 12)
    assert failures["events"]["1h"] == {"good": 10, "total": 12}
    assert next(s for s in body["slos"] if s["name"] == "freshness")["compliance"] == {
        "1h": None,
        "1d": None,
        "30d": None,
    }
    series = body["series"]
    assert len(series["labels"]) == 60 and series["embedded_per_minute"][-1] == 10 and series["failed"][-1] == 2
    assert series["latency_seconds"]["p95"][-1] > 30 and series["latency_seconds"]["p50"][0] is None
    assert body["capacity"]["needs"].startswith("needs at least 3 days of hourly arrivals")
    assert body["bucket_bounds"]["latency_seconds"] == list(LATENCY_BUCKETS)
    # Which model the throughput SLO holds to which target: never measured, none (the setting is unset).
    unmeasured = {
        "model": "local/hash-16",
        "docs_per_second": None,
        "from": "not held: never measured (manage.py measure_capacity)",
    }
    assert body["throughput_targets"] == [unmeasured]
    capacity_measurement("local/hash-16", usl_lambda=12.5)
    body = client.get("/api/v1/slos/?collection=hashes", HTTP_AUTHORIZATION=f"Token {token}").json()
    assert body["throughput_targets"] == [
        {"model": "local/hash-16", "docs_per_second": 10.0, "from": "capacity measurement"}
    ]

    # The admin page shows the same figures, and "no data" where a window has no events.
    client.force_login(user)
    with override_settings(EMBEDPORTAL_CAPACITY_WORKERS=1):
        page = client.get("/admin/pipeline/collection/slos/?range=1h")
    assert page.status_code == 200
    rows = {row["name"]: row for row in page.context["slo_rows"]}
    assert rows["failures"]["compliance"][0] == ("1h", "83.33%", False)
    assert rows["freshness"]["compliance"][0] == ("1h", "no data", True) and rows["freshness"]["state"] == "no data"
    assert page.context["figures"]["series"] == series
    assert "local/hash-16: 10.0 docs/s per worker (capacity measurement)" in page.content.decode()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("range=2w", "unknown range '2w'; use one of 1h, 6h, 24h, 7d, 30d"),
        ("collection=nope", "no collection named 'nope'"),
    ],
)
def test_the_api_says_what_to_fix(client, query, message):
    _, token = api_user("view_collectionactivity")
    response = client.get(f"/api/v1/slos/?{query}", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 400 and message in json.dumps(response.json())


def test_the_slo_page_ends_the_throughput_targets_sentence_without_a_stray_space(admin_client):
    # The include's last newline was rendered: "... its own model's target ." (the include ends without one).
    page = admin_client.get("/admin/pipeline/collection/slos/").content.decode()
    sentence = page.split('id="throughput-targets">')[1].split("</p>")[0]
    assert sentence.endswith('target<span class="throughput-targets"></span>.'), sentence


def test_the_slo_page_says_which_slos_page_on_burn_rate(admin_client):
    # It said "the page alert fires above 14.4 (1 h) and 6 (6 h)" under document_latency's burn rate of 20x
    # after a fresh install's first load, an alert that SLO does not have (a fresh-install drill).
    page = admin_client.get("/admin/pipeline/collection/slos/").content.decode()
    assert "the page alerts of freshness, failures, latency fire above 14.4 (1 h) and 6 (6 h)" in page
    assert "document_latency, search_latency, throughput_per_worker have no burn-rate alert" in page


def test_a_bulk_loads_batches_leave_the_latency_slo_on_both_sides(client, hash_collection, settings):
    # A user's first real corpus (the Django docs, on the bundled model, 2 cores) took 30 s and more a batch:
    # LatencyFastBurn paged within 10 minutes of the enqueue, and the app's side burned the same way.
    from pipeline import backfill
    from pipeline.models import Collection
    from tests.tools import metric_sum, parse_metrics

    settings.EMBEDPORTAL_METRICS_COLLECTORS = []

    def totals() -> dict[str, float]:
        m = parse_metrics(client.get("/metrics").content.decode())
        name = "embedding_pipeline_latency_seconds_count"
        return {b: metric_sum(m, name, stage="total", collection="hashes", bulk=b) for b in ("true", "false")}

    def claimed_batch(documents: int, seconds: float) -> None:
        batch(Collection.objects.get(pk=hash_collection.pk), embedded=documents, latency_seconds=seconds, at=NOW)

    before = totals()
    assert backfill.begin_backfill(hash_collection.pk)  # as a first load, a backfill or a re-embed sets it
    claimed_batch(29, 45.0)
    assert backfill.finish(hash_collection.pk)
    claimed_batch(1, 40.0)  # one document of the live collection, over 30 s: the SLO's only event
    after = totals()
    assert {b: after[b] - before[b] for b in after} == {"true": 29, "false": 1}
    latency = by_name(now=NOW + timedelta(minutes=1))["latency"]
    assert (latency.windows["1h"].bad, latency.windows["1h"].total) == (1, 1)


def test_the_latency_slos_series_is_declared_at_zero_before_a_collections_first_batch(client):
    # Born at its first increment, a series shows Prometheus its first value at once and rate() never sees
    # it: the latency SLO missed its first documents. Declared at 0 (bulk loads kept out, it cannot page).
    from pipeline.collections import create_collection
    from tests.tools import parse_metrics

    create_collection(name="declared", model="local/hash-16")
    client.get("/metrics")  # declared by this scrape's queue collector, exposed from the next one on
    m = parse_metrics(client.get("/metrics").content.decode())
    labels = (("bulk", "false"), ("collection", "declared"), ("stage", "total"))
    assert m[("embedding_pipeline_latency_seconds_count", labels)] == 0.0
