"""/metrics after real pipeline work in another process, sharing PROMETHEUS_MULTIPROC_DIR."""

from __future__ import annotations

import base64
import re
import subprocess
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from embedportal.settings import env_secret
from pipeline.collections import create_collection
from pipeline.models import Chunk, Collection, Document
from pipeline.queue import IncomingDocument, enqueue
from tests.conftest import manage
from tests.tools import metric_sum, promtool
from tests.tools import parse_metrics as parse

# The one lint finding we accept: the reprocessing gauge's required name ends in _count.
ALLOWED_PROMTOOL_FINDINGS = {
    'pipeline_stale_documents_count non-histogram and non-summary metrics should not have "_count" suffix'
}


def promtool_findings(text: str) -> set[str]:
    result = subprocess.run([promtool(), "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    findings = {line.strip() for line in (result.stdout + result.stderr).decode().splitlines() if line.strip()}
    # 0: clean; 3: lint findings only (listed); anything else is a parse error.
    assert result.returncode in (0, 3), findings
    return findings


@pytest.fixture
def metrics_dir(tmp_path: Path, monkeypatch) -> Path:
    path = tmp_path / "prom"
    path.mkdir()
    # Read at scrape time by the /metrics view, as gunicorn workers would have it from the environment.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(path))
    return path


@pytest.mark.django_db
def test_families_no_process_has_written_yet_are_declared_without_samples(client, metrics_dir):
    """Multiprocess mode before any process wrote a sample of them (no error yet): the families are
    declared as one process exposes them, so rules, dashboards and the operations tests find them;
    the per-process collectors (process_*, python_*) are left out."""
    text = client.get("/metrics").content.decode()
    lines = text.splitlines()
    assert "# TYPE embedding_pipeline_errors_total counter" in lines
    assert "# TYPE embedding_pipeline_documents_processed_total counter" in lines
    assert not [line for line in lines if line.startswith("embedding_pipeline_errors_total")]
    assert not [line for line in lines if line.startswith(("# TYPE process_", "# TYPE python_"))]
    promtool_findings(text)


@pytest.mark.django_db(transaction=True)
def test_metrics_view_reports_every_series_after_a_worker_process_ran(
    client, hash_collection, fake_collection, fake_provider, metrics_dir
):
    now = timezone.now()
    modified = now - timedelta(minutes=10)
    # Changes made after the collections existed (content older than its collection is judged from its creation).
    Collection.objects.filter(pk__in=[hash_collection.pk, fake_collection.pk]).update(
        created_at=now - timedelta(days=1)
    )
    enqueue(hash_collection, [IncomingDocument(f"h{i}", f"Paragraph {i}. " * 40, modified) for i in range(5)])
    # One poisoned document: the provider refuses the pair (400), the batch is split, the good one is stored.
    # Its collection's freshness SLA is 60 s: its 10-minute lag is late there, on time in hashes (1 h).
    fake_collection.freshness_sla = timedelta(seconds=60)
    fake_collection.save(update_fields=["freshness_sla"])
    ok, bad = IncomingDocument("ok", "a fine text", modified), IncomingDocument("bad", "POISON:400 text")
    enqueue(fake_collection, [ok, bad])
    held = create_collection(name="held", model="local/hash-16", chunk_unit="characters", chunk_size=100, paused=True)
    enqueue(held, [IncomingDocument(f"p{i}", f"waiting {i}") for i in range(3)])
    Document.objects.filter(collection=held).update(available_at=now - timedelta(hours=2))

    worker = manage("run_pipeline", "--once", env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    assert worker.wait(timeout=120) == 0

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.content.decode()
    m = parse(text)

    def stage_count(stage: str) -> float:
        return metric_sum(m, "embedding_pipeline_latency_seconds_count", stage=stage)

    # Counters and histograms written by the worker process, summed from the shared directory.
    processed = "embedding_pipeline_documents_processed_total"
    assert m[(processed, (("collection", "hashes"), ("outcome", "embedded")))] == 5
    assert m[(processed, (("collection", "fake"), ("outcome", "embedded")))] == 1
    assert m[(processed, (("collection", "fake"), ("outcome", "failed")))] == 1
    # The pair, then alone: which collection fails is in the label.
    assert m[("embedding_pipeline_errors_total", (("collection", "fake"), ("error_type", "bad_request")))] == 2
    assert metric_sum(m, "embedding_pipeline_errors_total", collection="hashes") == 0
    assert m[("embedding_pipeline_chunks_embedded_total", ())] == Chunk.objects.count() > 6
    assert (stage_count("chunking"), stage_count("embedding"), stage_count("storage"), stage_count("total")) == (
        7,
        7,
        6,
        6,
    )
    assert (
        "embedding_pipeline_latency_seconds_bucket",
        (("bulk", "false"), ("collection", "hashes"), ("le", "30.0"), ("stage", "total")),
    ) in m
    assert m[("embedding_pipeline_freshness_lag_seconds_count", ())] == 6
    # Modified 10 min before embedding: inside the 1 h bucket, outside the 5 min one.
    assert m[("embedding_pipeline_freshness_lag_seconds_bucket", (("le", "3600.0"),))] == 6
    assert m[("embedding_pipeline_freshness_lag_seconds_bucket", (("le", "300.0"),))] == 0
    # ...and judged against each collection's own SLA: all 5 on time in hashes, the one in fake late.
    judged = {
        (labels[0][1], labels[1][1]): value
        for (name, labels), value in m.items()
        if name == "embedding_pipeline_freshness_judged_total"
    }
    assert judged == {("hashes", "true"): 5, ("hashes", "false"): 0, ("fake", "true"): 0, ("fake", "false"): 1}
    # django-prometheus keeps counting the worker's queries in multiprocess mode.
    assert m[("django_db_execute_total", (("alias", "default"), ("vendor", "postgresql")))] > 0

    # Gauges computed from the database at scrape time.
    assert m[("embedding_pipeline_queue_depth", ())] == 3
    assert m[("embedding_pipeline_claimable_depth", ())] == 0  # the three wait in a paused collection
    assert m[("embedding_pipeline_collection_queue_depth", (("collection", "held"),))] == 3
    assert m[("embedding_pipeline_collection_queue_depth", (("collection", "hashes"),))] == 0
    assert m[("embedding_pipeline_collection_paused", (("collection", "held"),))] == 1
    assert m[("embedding_pipeline_collection_paused", (("collection", "hashes"),))] == 0
    assert m[("embedding_pipeline_oldest_pending_age_seconds", ())] == 0  # two hours, but paused on purpose
    assert m[("embedding_pipeline_processing_documents", ())] == 0
    assert m[("embedding_pipeline_throughput_docs_per_second", ())] == pytest.approx(6 / 300)
    assert m[("embedding_pipeline_workers_alive", ())] == 1
    assert 0 <= m[("embedding_pipeline_worker_heartbeat_age_seconds", ())] < 120
    # The reprocessing collector rides along on the same registry.
    assert m[("pipeline_reprocessing_queue_size", (("error_type", "bad_request"), ("state", "waiting")))] >= 0
    assert ("pipeline_stale_documents_count", (("collection", "hashes"),)) in m

    assert promtool_findings(text) <= ALLOWED_PROMTOOL_FINDINGS


@pytest.mark.django_db
def test_the_claimable_depth_leaves_out_paused_collections_and_deferred_documents(hash_collection):
    from pipeline.choices import CircuitState
    from pipeline.collectors import queue_snapshot
    from pipeline.models import Collection, ProviderCircuit

    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"text {i}") for i in range(4)])
    now = timezone.now()
    Document.objects.update(available_at=now - timedelta(hours=1))
    Document.objects.filter(external_id="d0").update(available_at=now + timedelta(hours=1))  # deferred
    Document.objects.filter(external_id="d1").update(
        status="processing", lease_owner="gone:1:w", lease_expires_at=now - timedelta(seconds=1)
    )
    snap = queue_snapshot()
    assert (snap.depth, snap.claimable) == (3, 3)  # d1's lease expired: claimable, though not pending
    assert 3590 < snap.oldest_pending_seconds < 3700  # d0 is not due; d2 and d3 became due an hour ago
    # Its provider's circuit open: no worker may claim them (a worker autoscaler scaled out for it).
    circuit = ProviderCircuit.objects.create(
        model=hash_collection.model,
        api_base=hash_collection.api_base,
        endpoint="e",
        state=CircuitState.OPEN,
        updated_at=now,
    )
    assert queue_snapshot().claimable == 0
    circuit.delete()
    Collection.objects.filter(pk=hash_collection.pk).pause()
    snap = queue_snapshot()
    assert (snap.claimable, snap.oldest_pending_seconds) == (0, 0)


@pytest.mark.django_db
def test_the_queue_head_age_leaves_out_work_behind_an_open_circuit(hash_collection):
    """A provider outage is the circuit's alert (EmbeddingPipelineCircuitOpenTooLong): its backlog aging
    also fired EmbeddingPipelineQueueHeadOld ("workers are too few, stuck or failing", the stuck-queue
    runbook) after 40 minutes, and the overview's "oldest claimable wait" counted documents no worker
    may claim. The queue health check already leaves them out."""
    from pipeline.choices import CircuitState, WorkerRole
    from pipeline.collectors import queue_snapshot
    from pipeline.health import check_queue
    from pipeline.models import ProviderCircuit, WorkerHeartbeat

    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"text {i}") for i in range(2)])
    now = timezone.now()
    Document.objects.update(available_at=now - timedelta(hours=1))
    ProviderCircuit.objects.create(
        model=hash_collection.model,
        api_base=hash_collection.api_base,
        endpoint="e",
        state=CircuitState.OPEN,
        updated_at=now,
    )
    WorkerHeartbeat.objects.beat(WorkerRole.WORKER)
    assert check_queue().details["oldest_pending_seconds"] == 0
    assert queue_snapshot().oldest_pending_seconds == 0
    ProviderCircuit.objects.update(state=CircuitState.CLOSED)
    assert 3590 < queue_snapshot().oldest_pending_seconds < 3700


@pytest.mark.django_db(transaction=True)
def test_serve_metrics_command_serves_the_workers_metrics_and_database_gauges(hash_collection, metrics_dir):
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"text {i}") for i in range(4)])
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    assert manage("run_pipeline", "--once", env=env).wait(timeout=120) == 0
    enqueue(hash_collection, [IncomingDocument("later", "arrived after the worker stopped")])

    server = manage("serve_metrics", "--port", "0", "--addr", "127.0.0.1", env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        port = re.search(r":(\d+)/metrics", line).group(1)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
        # A series born at its first increment showed Prometheus N at once: rate() never saw those N (the
        # on-call drill's). From the next scrape on, every collection's series are there, at 0.
        again = parse(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode())
    finally:
        server.terminate()
        server.wait(timeout=10)

    m = parse(text)
    assert metric_sum(m, "embedding_pipeline_documents_processed_total", outcome="embedded") == 4
    assert m[("embedding_pipeline_queue_depth", ())] == 1
    assert ("pipeline_reprocessing_queue_age_seconds_gcount", ()) in m
    assert promtool_findings(text) <= ALLOWED_PROMTOOL_FINDINGS
    hashes = (("collection", "hashes"),)
    assert again[("embedding_pipeline_errors_total", (*hashes, ("error_type", "api_error")))] == 0
    assert again[("embedding_pipeline_documents_processed_total", (*hashes, ("outcome", "failed")))] == 0
    assert again[("embedding_pipeline_documents_processed_total", (*hashes, ("outcome", "embedded")))] == 4
    assert again[("embedding_pipeline_freshness_judged_total", (*hashes, ("within_sla", "false")))] == 0


@pytest.mark.django_db
def test_queue_depth_is_exact_for_a_large_backlog(hash_collection, client):
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO pipeline_document (collection_id, external_id, text, content_hash, metadata, status,"
            " attempts, last_error, lease_owner, enqueued_at, available_at, created_at, updated_at)"
            " SELECT %s, 'n' || n, 't', md5(n::text), '{}', CASE WHEN n %% 10 = 0 THEN 'embedded' ELSE 'pending' END,"
            " 0, '', '', now(), now(), now(), now() FROM generate_series(1, 25000) AS n",
            [hash_collection.pk],
        )
    m = parse(client.get("/metrics").content.decode())
    assert m[("embedding_pipeline_queue_depth", ())] == 22500
    assert m[("embedding_pipeline_collection_queue_depth", (("collection", "hashes"),))] == 22500


@pytest.mark.django_db
def test_metrics_ip_allow_list_refuses_other_addresses(client, settings):
    settings.EMBEDPORTAL_METRICS_ALLOWED_IPS = ["10.0.0.0/8", "192.168.1.7"]
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    # A forged forwarding header does not get around it.
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.0.0.1").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.20.30.40").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.7").status_code == 200


@pytest.mark.django_db
def test_metrics_basic_auth_needs_the_configured_password(client, settings):
    settings.EMBEDPORTAL_METRICS_BASIC_AUTH = "prometheus:s3cret-pass"

    def auth(credentials: str) -> str:
        return "Basic " + base64.b64encode(credentials.encode()).decode()

    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing["WWW-Authenticate"] == 'Basic realm="metrics"'
    assert client.get("/metrics", HTTP_AUTHORIZATION=auth("prometheus:wrong")).status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Basic not-base64!").status_code == 401
    ok = client.get("/metrics", HTTP_AUTHORIZATION=auth("prometheus:s3cret-pass"))
    assert ok.status_code == 200 and b"embedding_pipeline_queue_depth" in ok.content


def test_metrics_basic_auth_reads_a_mounted_secret_file(tmp_path, monkeypatch):
    secret = tmp_path / "metrics-auth"
    secret.write_text("prometheus:from-file\n")
    monkeypatch.setenv("EMBEDPORTAL_METRICS_BASIC_AUTH", "prometheus:from-env")
    monkeypatch.setenv("EMBEDPORTAL_METRICS_BASIC_AUTH_FILE", str(secret))
    assert env_secret("EMBEDPORTAL_METRICS_BASIC_AUTH") == "prometheus:from-file"


@pytest.mark.django_db
def test_stage_percentiles_weight_each_batch_row_by_its_documents(hash_collection):
    from django.utils import timezone

    from pipeline.percentiles import db_percentiles
    from tests.pipeline.test_history import batch

    now = timezone.now()
    batch(hash_collection, embedded=9, latency_seconds=1.0, at=now)
    batch(hash_collection, embedded=1, latency_seconds=10.0, at=now)
    batch(hash_collection, failed=3, latency_seconds=99.0, at=now)  # no document stored: no weight
    total = db_percentiles(now - timedelta(minutes=1))["total"]
    assert (total.count, total.p50) == (10, 1.0)
    assert total.p95 == pytest.approx(1.0 + 0.55 * 9)
    assert db_percentiles(now + timedelta(minutes=1))["total"].count == 0


@pytest.mark.django_db(transaction=True)
def test_the_slos_series_are_declared_at_zero_by_a_fresh_process_scrape(client, hash_collection, metrics_dir):
    # Born at their first increment, a series' first samples never reach rate(): a drill's first API search
    # and a collection's first documents were missing from the search latency and latency SLOs.
    scrape = "from django.test import Client; assert Client(HTTP_HOST='localhost').get('/metrics').status_code == 200"
    assert manage("shell", "-c", scrape, env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}).wait(timeout=120) == 0
    m = parse(client.get("/metrics").content.decode())
    for source in ("api", "cli", "other"):
        assert m[("embedding_pipeline_search_seconds_count", (("source", source),))] == 0
    latency = (("bulk", "false"), ("collection", "hashes"), ("stage", "total"))
    assert m[("embedding_pipeline_latency_seconds_count", latency)] == 0
