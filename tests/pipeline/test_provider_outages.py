"""A provider outage costs a bounded number of calls and never stalls another collection:
outage errors defer batches whole, a circuit breaker per endpoint (shared through the database)
stops the calls, one worker probes, and claims go round-robin across collections.

Real HTTP to local fake providers through LiteLLM; time is moved with time-machine, never slept.
"""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.utils import timezone

from pipeline import circuits, health, waits
from pipeline.choices import CircuitState, DocumentStatus, ErrorType, Stage
from pipeline.circuits import CIRCUIT_STATE, CircuitCollector
from pipeline.collections import create_collection
from pipeline.embedding import PROBE_TEXT, PipelineError
from pipeline.models import Collection, Document, ProviderCircuit
from pipeline.pipeline import EmbeddingIngestionPipeline, RetryPolicy
from pipeline.queue import IncomingDocument, enqueue
from tests.conftest import serving_fake_provider
from tests.factories import fake_backed

pytestmark = pytest.mark.django_db


healthy_provider = pytest.fixture(serving_fake_provider, name="healthy_provider")


def add(collection, n: int, prefix: str = "d") -> None:
    enqueue(collection, [IncomingDocument(f"{prefix}{i}", f"{collection.name} document {i}") for i in range(n)])


def worker(waits: list[float], claim_batch: int = 20) -> EmbeddingIngestionPipeline:
    return EmbeddingIngestionPipeline(claim_batch=claim_batch, retry=RetryPolicy.from_settings(sleep=waits.append))


def statuses(collection) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in Document.objects.filter(collection=collection).values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


@pytest.mark.parametrize("mode", ["503", "500", "429"])
def test_an_outage_defers_a_20_document_batch_after_its_tries_instead_of_splitting_it(
    fake_collection, fake_provider, mode
):
    fake_provider.mode = mode
    fake_provider.retry_after = "0"
    add(fake_collection, 20)
    waits: list[float] = []
    report = worker(waits).run_once()

    # tries (3), not tries x halving (117 before): the batch is one group, retried, then deferred.
    assert len(fake_provider.requests) == 3
    assert (report.claimed, report.deferred, report.failed, report.embedded) == (20, 20, 0, 0)
    assert statuses(fake_collection) == {DocumentStatus.PENDING: 20}
    assert set(Document.objects.values_list("attempts", "lease_owner")) == {(1, "")}
    circuit = ProviderCircuit.objects.get()
    assert (circuit.state, circuit.consecutive_failures) == (CircuitState.CLOSED, 3)


def test_connection_refused_is_an_outage_and_counts_toward_the_circuit(db, monkeypatch):
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-test-secret-123456")
    nowhere = fake_backed("nowhere", "http://127.0.0.1:9/v1")  # discard port: nothing listens
    add(nowhere, 20)
    waits: list[float] = []
    report = worker(waits).run_once()
    assert (report.deferred, report.failed) == (20, 0)
    assert report.errors == {ErrorType.API_ERROR: 3}
    assert ProviderCircuit.objects.get().consecutive_failures == 3


def test_one_provider_down_leaves_another_collection_undelayed_and_calls_stay_bounded(
    fake_collection, fake_provider, healthy_provider, settings
):
    settings.EMBEDPORTAL_CIRCUIT_FAILURES = 3
    settings.EMBEDPORTAL_CIRCUIT_OPEN_SECONDS = 30
    settings.EMBEDPORTAL_CIRCUIT_MAX_OPEN_SECONDS = 600
    fake_provider.mode = "503"
    down = fake_collection
    healthy = fake_backed("healthy", healthy_provider.api_base)
    add(down, 20)
    add(healthy, 20)
    waits: list[float] = []
    pipeline = worker(waits)

    with time_machine.travel(timezone.now(), tick=False) as traveller:
        opened_at = timezone.now()
        report = pipeline.drain()
        # The down collection came first (never claimed, lowest id): 3 tries opened its circuit,
        # its 20 documents went back to the queue; the next claim served the healthy collection.
        assert len(fake_provider.requests) == 3 and waits == [1.0, 2.0]
        assert statuses(healthy) == {DocumentStatus.EMBEDDED: 20}
        assert set(Document.objects.filter(collection=healthy).values_list("attempts", flat=True)) == {1}
        assert len(healthy_provider.requests) == math.ceil(20 / healthy.batch_size)
        assert statuses(down) == {DocumentStatus.PENDING: 20}
        assert (report.embedded, report.deferred, report.failed) == (20, 20, 0)
        circuit = ProviderCircuit.objects.get()
        assert circuit.state == CircuitState.OPEN
        assert circuit.next_probe_at == opened_at + timedelta(seconds=30)

        # New work for the healthy collection while the circuit is open: embedded at once, and the
        # down provider is not called.
        add(healthy, 5, prefix="late")
        assert pipeline.drain().embedded == 5
        assert len(fake_provider.requests) == 3

        # Each probe is one call of a fixed text, no document; a failed probe doubles the wait: 30, 60,
        # 120, 240 s.
        waited = 30
        for probe in range(1, 5):
            traveller.shift(timedelta(seconds=waited - 1))
            assert pipeline.drain().claimed == 0 and len(fake_provider.requests) == 3 + probe - 1, "no probe yet"
            traveller.shift(timedelta(seconds=1))
            report = pipeline.drain()
            assert (report.claimed, report.deferred) == (0, 0)
            assert len(fake_provider.requests) == 3 + probe
            assert fake_provider.requests[-1]["inputs"] == [PROBE_TEXT]
            circuit.refresh_from_db()
            assert (circuit.state, circuit.reopenings) == (CircuitState.OPEN, probe)
            waited *= 2
        assert statuses(down) == {DocumentStatus.PENDING: 20}, "an outage fails no document"

        # The provider is back: the next probe closes the circuit and the backlog drains.
        fake_provider.mode = "ok"
        traveller.shift(timedelta(seconds=waited))
        report = pipeline.drain()
        assert report.embedded == 20
        assert ProviderCircuit.objects.get().state == CircuitState.CLOSED
        assert statuses(down) == {DocumentStatus.EMBEDDED: 20}
        # 3 tries + 4 failed probes + 1 good probe + the 20 documents in calls of 4.
        assert len(fake_provider.requests) == 3 + 4 + 1 + math.ceil(20 / down.batch_size)


def test_a_document_the_provider_answers_with_a_500_fails_alone_and_leaves_the_circuit_closed(
    fake_collection, fake_provider, settings
):
    """One such document among good ones opened the shared circuit, was itself the half-open probe
    (a probe claimed a document), and kept every collection on the endpoint waiting, at each of its
    retries too: the provider looked down while it answered everything else. Probes embed a fixed
    text now, so the circuit closes and the document is isolated as a bad input."""
    settings.EMBEDPORTAL_CIRCUIT_OPEN_SECONDS = 30
    add(fake_collection, 5)
    enqueue(fake_collection, [IncomingDocument("bad", "a text the provider fails on POISON:500")])
    pipeline = worker([])

    def run_until_settled() -> int:
        rounds = 0
        with time_machine.travel(timezone.now(), tick=False) as traveller:
            while Document.objects.filter(collection=fake_collection, status=DocumentStatus.PENDING).exists():
                rounds += 1
                assert rounds < 30, statuses(fake_collection)
                pipeline.drain()
                traveller.shift(timedelta(seconds=61))  # every deferral and probe wait is over
        return rounds

    assert run_until_settled() <= 8
    assert statuses(fake_collection) == {DocumentStatus.EMBEDDED: 5, DocumentStatus.FAILED: 1}
    assert Document.objects.get(external_id="bad").last_error.startswith("api_error")
    assert ProviderCircuit.objects.get().state == CircuitState.CLOSED

    # Its retry (the reprocessing workflow requeues it alone): it fails alone again, the circuit ends closed.
    Document.objects.filter(external_id="bad").requeue()
    assert run_until_settled() <= 8
    assert statuses(fake_collection) == {DocumentStatus.EMBEDDED: 5, DocumentStatus.FAILED: 1}
    assert ProviderCircuit.objects.get().state == CircuitState.CLOSED
    add(fake_collection, 1, prefix="late")
    assert pipeline.drain().embedded == 1, "the endpoint serves new work at once"


def test_a_throttled_batch_is_deferred_however_often_never_split_and_failed(fake_collection, fake_provider):
    """A provider throttling some calls (a shared quota) answers others, so the circuit stays closed: past
    EMBEDPORTAL_MAX_DEFERRALS the batch was split to find a bad input no 429 has, and its documents failed
    as rate_limit, into the reprocessing backoff and on to dead letters. A 429 fails no document."""
    fake_provider.mode, fake_provider.retry_after = "429", "0"
    add(fake_collection, 1)
    pipeline = worker([])
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        for _ in range(6):
            calls = len(fake_provider.requests)
            report = pipeline.run_once()
            assert (report.claimed, report.deferred, report.failed) == (1, 1, 0)
            assert len(fake_provider.requests) - calls == 3, "its tries, no more"
            ProviderCircuit.objects.record_success(fake_collection)  # another batch got through
            traveller.shift(timedelta(seconds=61))
        assert statuses(fake_collection) == {DocumentStatus.PENDING: 1}
        fake_provider.mode = "ok"
        assert pipeline.drain().embedded == 1


def test_only_one_worker_wins_the_half_open_probe(fake_collection, settings):
    settings.EMBEDPORTAL_CIRCUIT_FAILURES = 1
    state = ProviderCircuit.objects.record_failure(fake_collection, ErrorType.API_ERROR, 1, timedelta(seconds=0))
    assert state == CircuitState.OPEN
    lease = timedelta(seconds=30)
    won = ProviderCircuit.objects.take_probe("worker-a", lease)
    assert won is not None and (won.state, won.probe_owner) == (CircuitState.HALF_OPEN, "worker-a")
    assert ProviderCircuit.objects.take_probe("worker-b", lease) is None
    # Only the prober can end its probe (compare-and-swap on state and owner).
    assert ProviderCircuit.objects.close("worker-b") == 0
    assert ProviderCircuit.objects.close("worker-a") == 1
    assert ProviderCircuit.objects.get().state == CircuitState.CLOSED


def test_a_dead_probers_half_open_circuit_is_probed_again_after_its_lease(fake_collection):
    ProviderCircuit.objects.record_failure(fake_collection, ErrorType.TIMEOUT, 1, timedelta(seconds=0))
    assert ProviderCircuit.objects.take_probe("dies", timedelta(seconds=30)) is not None
    with time_machine.travel(timezone.now() + timedelta(seconds=31), tick=False):
        again = ProviderCircuit.objects.take_probe("lives", timedelta(seconds=30))
    assert again is not None and again.probe_owner == "lives"


def test_a_probe_that_hangs_to_its_timeout_keeps_the_probe_and_backs_off(fake_collection, fake_provider, settings):
    # A probe held for the document lease (30 s) while the call waits up to its timeout (60 s here): another
    # worker took the probe over every 30 s, the first's reopening changed nothing, and a hanging provider
    # was called twice a minute for ever instead of backing off (the on-call drill's).
    settings.EMBEDPORTAL_EMBED_TIMEOUT = 60
    prober, other = worker([]), worker([])
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        started = timezone.now()
        ProviderCircuit.objects.record_failure(fake_collection, ErrorType.API_ERROR, 1, timedelta(seconds=0))

        def hang(collection, texts, timeout=None):  # the provider answers nothing until the call's timeout
            traveller.shift(timedelta(seconds=45))  # past the document lease, within the call's timeout
            assert other.run_once().claimed == 0
            assert len(fake_provider.requests) == 0, "the other worker did not take the probe over"
            raise PipelineError(ErrorType.TIMEOUT, Stage.EMBEDDING, "timed out after 60 s")

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("pipeline.pipeline.embed_texts", hang)
            prober.run_once()
        circuit = ProviderCircuit.objects.get()
        assert (circuit.state, circuit.reopenings, circuit.last_error_type) == (CircuitState.OPEN, 1, "timeout")
        assert circuit.opened_at == started, "when the outage began, not the latest reopening"
        assert circuit.next_probe_at == started + timedelta(seconds=45) + waits.circuit_wait(1)


def test_an_open_circuit_is_a_metric_and_in_the_health_report_without_secrets(
    db, fake_provider, monkeypatch, admin_client
):
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-test-secret-123456")
    port = fake_provider.api_base.split(":")[2].split("/")[0]
    # Credentials in api_base are refused now (and stripped by a migration); a row written before
    # that still must not leak them through the circuit's label, the health report or the page.
    secretive = fake_backed("secretive", f"http://127.0.0.1:{port}/v1")
    Collection.objects.filter(pk=secretive.pk).update(
        api_base=f"http://user:hunter22@127.0.0.1:{port}/v1?key=topsecret"
    )
    secretive.refresh_from_db()
    ProviderCircuit.objects.record_failure(secretive, ErrorType.API_ERROR, 1, timedelta(seconds=30))

    (family,) = CircuitCollector().collect()
    assert family.name == CIRCUIT_STATE
    assert [(s.labels, s.value) for s in family.samples] == [
        ({"endpoint": f"openai/fake-embedder@127.0.0.1:{port}"}, 1)
    ]
    model = health.check_model()
    assert not model.ok
    assert f"openai/fake-embedder@127.0.0.1:{port}: circuit open after api_error" in model.reason
    assert [c["endpoint"] for c in model.details["circuits"]] == [f"openai/fake-embedder@127.0.0.1:{port}"]
    page = admin_client.get("/admin/pipeline/collection/overview/").content.decode()
    assert 'id="provider-circuits"' in page
    assert f"<td>openai/fake-embedder@127.0.0.1:{port}</td><td>open</td><td>api_error</td>" in page
    for shown in (str(family.samples), model.reason, str(model.details), page):
        assert "hunter22" not in shown and "topsecret" not in shown


def test_the_health_check_does_not_probe_an_endpoint_whose_circuit_is_open(fake_collection, fake_provider, settings):
    # A hanging provider: each probe would wait out the health timeout, under the lock every caller queues on.
    settings.EMBEDPORTAL_HEALTH_MODEL_TIMEOUT = 5.0
    fake_provider.mode = "timeout"
    ProviderCircuit.objects.record_failure(fake_collection, ErrorType.TIMEOUT, 1, timedelta(minutes=5))
    asked = len(fake_provider.requests)

    model = health.check_model()
    assert not model.ok
    assert len(fake_provider.requests) == asked, "the health check called a provider whose circuit is open"
    assert model.details["configurations"][0]["seconds"] == 0
    assert "not probed: its provider circuit is open" in model.reason
    assert "circuit open after timeout" in model.reason

    # The circuit closed (a worker's probe answered): the next check probes again.
    fake_provider.mode = "ok"
    ProviderCircuit.objects.endpoint(fake_collection).delete()
    assert health.check_model().ok
    assert len(fake_provider.requests) == asked + 1


def test_claims_go_round_robin_so_a_backlog_does_not_starve_another_collection(hash_collection):
    small = create_collection(
        name="small", model="local/hash-16", chunk_unit="characters", chunk_size=200, chunk_overlap=0
    )
    add(hash_collection, 200)
    add(small, 3)
    pipeline = EmbeddingIngestionPipeline(claim_batch=10)
    order = []
    for _ in range(4):
        report = pipeline.run_once()
        order.append(
            set(Document.objects.filter(status=DocumentStatus.EMBEDDED).values_list("collection__name", flat=True))
        )
        assert report.claimed
    # Claim 1 took the backlog (first in id order), claim 2 the small collection at once.
    assert order[0] == {"hashes"} and order[1] == {"hashes", "small"}
    assert statuses(small) == {DocumentStatus.EMBEDDED: 3}


def test_the_claim_reads_indexes_only_at_100k_pending(hash_collection):
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO pipeline_document (collection_id, external_id, text, content_hash, metadata, status,
                   attempts, last_error, lease_owner, enqueued_at, available_at, created_at, updated_at)
            SELECT %s, 'bulk-' || g, 'text ' || g, md5(g::text), '{}', 'pending', 0, '', '', now(), now(), now(), now()
              FROM generate_series(1, 100000) g
            """,
            [hash_collection.pk],
        )
        cur.execute("ANALYZE pipeline_document")
    now = timezone.now()
    with transaction.atomic():
        pending = (
            Document.objects.filter(
                collection_id=hash_collection.pk, status=DocumentStatus.PENDING, available_at__lte=now
            )
            .order_by("available_at", "id")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:32]
        )
        plan = pending.explain()
        # Either partial pending index serves it in order: no sequential scan, no sort of the backlog.
        assert "Index Scan using pipeline_document_pending" in plan, plan
        assert "Seq Scan" not in plan and "Sort" not in plan, plan
        with connection.cursor() as cur:
            from pipeline.models import _NEXT_COLLECTIONS_SQL

            cur.execute("EXPLAIN " + _NEXT_COLLECTIONS_SQL, {"now": now, "candidates": 4})
            plan = "\n".join(row[0] for row in cur.fetchall())
        assert "Seq Scan on pipeline_document" not in plan, plan
    claimed = Document.objects.claim("w", 32, timedelta(seconds=30))
    assert len(claimed) == 32


def test_a_paused_or_deleted_collections_circuit_holds_nothing_back_and_closes(
    fake_collection, django_capture_on_commit_callbacks, client
):
    from django_q.models import OrmQ

    from pipeline import tasks

    ProviderCircuit.objects.record_failure(fake_collection, ErrorType.API_ERROR, 1, timedelta(seconds=600))
    assert not health.check_model().ok
    # The operator's "probe now" wakes a worker to make the probe at once.
    OrmQ.objects.all().delete()
    with django_capture_on_commit_callbacks(execute=True):
        assert ProviderCircuit.objects.all().probe_now() == 1
    assert OrmQ.objects.exists()
    # Paused: nothing would ever probe it (a probe claims one of its documents).
    Collection.objects.filter(pk=fake_collection.pk).pause()
    assert health.check_model().reason == "no active collections: nothing to embed with"
    assert circuits.not_closed() == []
    tasks.heartbeat()
    assert ProviderCircuit.objects.get().state == CircuitState.CLOSED
    # Deleted: the closed circuit goes too, and its series (40 made-up models, created and deleted, left 30
    # series at 0 for ever: the injection red team's second round).
    assert f'endpoint="{fake_collection.model}@' in client.get("/metrics").content.decode()
    Collection.objects.filter(pk=fake_collection.pk).delete()
    tasks.heartbeat()
    assert not ProviderCircuit.objects.exists()
    assert "embedding_pipeline_provider_circuit_state{" not in client.get("/metrics").content.decode()


def test_a_missing_provider_key_is_an_auth_failure_not_an_outage(db, fake_provider, monkeypatch):
    monkeypatch.delenv("FAKE_PROVIDER_KEY", raising=False)
    keyless = fake_backed("keyless", fake_provider.api_base)
    add(keyless, 2)
    report = worker([]).run_once()
    assert (report.failed, report.deferred) == (2, 0)
    assert report.errors == {ErrorType.AUTH: 1}
    assert fake_provider.requests == []  # the provider was never asked
    assert "FAKE_PROVIDER_KEY (or FAKE_PROVIDER_KEY_FILE)" in Document.objects.first().last_error
    assert not ProviderCircuit.objects.exists() or ProviderCircuit.objects.get().state == CircuitState.CLOSED


def test_no_key_variable_where_the_client_needs_a_key_is_an_auth_failure_not_an_outage(db, fake_provider, monkeypatch):
    # No api_key_env and the provider's own endpoint (no api_base): the OpenAI client refuses before any
    # request, and LiteLLM raises that as an InternalServerError. It was an outage: circuit open,
    # deferred, probed every minute forever. (With an api_base of its own a collection without a key
    # variable sends a placeholder instead: test_provider_key_variables.)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    keyless = fake_backed("nokeyvar", fake_provider.api_base)
    Collection.objects.filter(pk=keyless.pk).update(api_key_env="", api_base="")
    add(keyless, 2)
    report = worker([]).run_once()
    assert (report.failed, report.deferred) == (2, 0)
    assert report.errors == {ErrorType.AUTH: 1}
    assert fake_provider.requests == []
    assert "name the variable holding the key in the collection's api_key_env" in Document.objects.first().last_error
    assert not ProviderCircuit.objects.exists() or ProviderCircuit.objects.get().state == CircuitState.CLOSED
