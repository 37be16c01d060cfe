"""The performance SLO rules: valid for Prometheus, unit-tested with promtool, and fed by the
compliance gauge the app really exports."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from django.utils import timezone

from pipeline import backfill, recording
from pipeline.choices import Stage
from pipeline.models import Collection
from pipeline.performance.compliance import COMPLIANCE
from tests.grafana.test_slo_rules import RULES, rules
from tests.tools import parse_metrics as parse

NAME = "performance.rules.yml"


def test_each_slo_has_a_degradation_alert_with_a_runbook():
    alerts = {r["alert"]: r for r in rules(NAME) if "alert" in r}
    slos = {r["expr"].split('slo="')[1].split('"')[0]: name for name, r in alerts.items()}
    assert set(slos) == {"document_latency", "search_latency", "throughput_per_worker"}
    for rule in alerts.values():
        assert rule["labels"]["severity"] == "warning"
        assert rule["annotations"]["runbook_url"].startswith("https://embedportal.example/docs/runbooks/performance/#")
    groups = [g["name"] for g in yaml.safe_load((RULES / NAME).read_text())["groups"]]
    assert groups == ["embedding-pipeline-performance-recording", "embedding-pipeline-performance"]


@pytest.mark.django_db
def test_the_app_exports_the_compliance_the_rules_read(client, hash_collection, settings):
    settings.EMBEDPORTAL_SLO_DOCUMENT_P95_SECONDS = 1.0
    settings.EMBEDPORTAL_SLO_THROUGHPUT_PER_WORKER = 20.0
    for documents, seconds in ((30, 0.5), (10, 3.0)):
        result = recording.BatchResult(hash_collection, "w", documents, 0.0, 0.0, 16, documents, chunks=documents)
        result.seconds[Stage.EMBEDDING] = result.total_seconds = seconds
        recording.record(result)
    m = parse(client.get("/metrics").content.decode())
    # 30 of 40 documents within 1 s; 40 documents in 3.5 busy seconds = 11.4 docs/s of the 20 wanted.
    assert m[(COMPLIANCE, (("slo", "document_latency"),))] == pytest.approx(0.75)
    assert m[(COMPLIANCE, (("slo", "throughput_per_worker"),))] == pytest.approx(40 / 3.5 / 20)
    assert m[("performance_slo_target_embedding_pipeline_operations", (("slo", "document_latency"),))] == 1.0
    # What the stale-capacity alert compares the measurement's age with.
    settings.EMBEDPORTAL_CAPACITY_MAX_AGE_DAYS = 7
    m = parse(client.get("/metrics").content.decode())
    assert m[("embedding_pipeline_capacity_max_age_seconds", ())] == 7 * 86400


@pytest.mark.django_db
def test_a_model_never_measured_is_held_to_no_throughput_unless_an_operator_sets_one(client, hash_collection, settings):
    # A fresh install's first load (make run's sample corpus on the bundled model) ran below a rate guessed
    # for every model, so EmbeddingPipelineThroughputDegraded fired before anyone could measure the model.
    result = recording.BatchResult(hash_collection, "w", 29, 0.0, 0.0, 16, 29, chunks=290)
    result.seconds[Stage.EMBEDDING] = result.total_seconds = 35.0
    recording.record(result)
    m = parse(client.get("/metrics").content.decode())
    throughput = (COMPLIANCE, (("slo", "throughput_per_worker"),))
    target = ("performance_slo_target_embedding_pipeline_operations", (("slo", "throughput_per_worker"),))
    assert throughput not in m and target not in m
    assert m[(COMPLIANCE, (("slo", "document_latency"),))] == 0.0  # the batch still counts for latency
    settings.EMBEDPORTAL_SLO_THROUGHPUT_PER_WORKER = "2"
    m = parse(client.get("/metrics").content.decode())
    assert m[throughput] == pytest.approx(29 / 35 / 2) and m[target] == 2.0


@pytest.mark.django_db
def test_a_bulk_loads_batches_leave_document_latency_to_throughput(client, hash_collection, settings):
    # make run's first load: the sample corpus in one 29-document batch of 20 to 35 s on the bundled model
    # fired EmbeddingPipelineDocumentLatencyDegraded on every fresh install, with nothing wrong and nothing
    # to do: no document of a first load is searchable before its last one, nor waited on alone.
    settings.EMBEDPORTAL_SLO_THROUGHPUT_PER_WORKER = "2"
    latency = (COMPLIANCE, (("slo", "document_latency"),))

    def batch(documents: int, seconds: float) -> None:
        loading = Collection.objects.get(pk=hash_collection.pk)  # as the claim reads it
        result = recording.BatchResult(loading, "w", documents, 0.0, 0.0, 16, documents, chunks=documents)
        result.seconds[Stage.EMBEDDING] = result.total_seconds = seconds
        recording.record(result)

    assert backfill.begin_backfill(hash_collection.pk)  # as a first load or a re-embed sets it
    batch(29, 35.0)
    m = parse(client.get("/metrics").content.decode())
    assert latency not in m and m[(COMPLIANCE, (("slo", "throughput_per_worker"),))] == pytest.approx(29 / 35 / 2)
    backfill.finish(hash_collection.pk)
    batch(1, 12.0)  # one document of a live collection, over the 10 s target
    assert parse(client.get("/metrics").content.decode())[latency] == 0.0


@pytest.mark.django_db
def test_search_compliance_is_the_windows_share_while_the_optimizer_keeps_the_latest(
    client, settings, hash_collection, fake_collection
):
    from pipeline.percentiles import searches
    from pipeline.performance.compliance import compliance

    def search_latency():
        count, p95 = searches()
        return p95, count

    settings.EMBEDPORTAL_OPTIMIZER_EVALUATE_SEARCHES = 50
    assert compliance()["search_latency"] is None and search_latency() == (None, 0)
    for seconds in [9.0] * 10 + [0.01] * 45 + [0.2] * 5:
        recording.record_search(hash_collection, seconds, "api")
    for seconds in [0.01] * 45 + [0.2] * 5:
        recording.record_search(fake_collection, seconds, "cli")
    recording.record_search(fake_collection, 9.0, "cli", at=timezone.now() - timedelta(hours=2))  # before the window
    # The SLO: every search of the window, 90 of 110 within 50 ms.
    assert compliance()["search_latency"] == pytest.approx(90 / 110)
    # The optimizer's p95: each collection's latest 50 searches (10 older ones of the first drop out).
    p95, count = search_latency()
    assert count == 100 and 0.01 < p95 <= 0.2
    # The rule's `le` is a bucket the app really exports (prometheus_client's spelling of the bound).
    recorded = next(r for r in rules(NAME) if r.get("record", "").endswith(":ratio_rate1h"))
    le = recorded["expr"].split('le="')[1].split('"')[0]
    exported = parse(client.get("/metrics").content.decode())
    assert ("embedding_pipeline_search_seconds_bucket", (("le", le), ("source", "api"))) in exported
