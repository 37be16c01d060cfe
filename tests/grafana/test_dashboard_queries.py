"""Every query of every dashboard panel, evaluated by a real Prometheus scraping the running app.

gunicorn serves the app's /metrics (the production path), a worker process embeds documents in
three waves (each with documents 10 minutes after their source update, on time in a collection with
a 1 h freshness SLA and late in one with 60 s, and one document the provider rejects), and Prometheus
2.42 (Debian's, from .tools/) scrapes every second with every rule file of grafana/prometheus/
loaded. Each panel query, with its template variables substituted, must parse and return what the
panel promises: the queue depth the database has, throughput above zero, and so on.

The capacity gauges (embedding_pipeline_capacity_*) come from `manage.py measure_capacity`: when
the app exports them, the queries that read them must return data; while it does not, they must
return none. Which case held is printed with the query timings (`pytest -s`).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from django.utils import timezone

from grafana import dashboard
from pipeline.choices import DocumentStatus
from pipeline.collections import create_collection
from pipeline.models import Collection, Document, RetrievalEvaluation
from pipeline.queue import IncomingDocument, enqueue
from reprocessing.models import FailedDocument
from tests.conftest import ROOT, database_url, manage, wait_for
from tests.tools import free_port, http_get, prometheus, reachable, stop

RULES_GLOB = str(ROOT / "grafana" / "prometheus" / "*.rules.yml")
# What Grafana would substitute: every collection, and a rate window holding all three waves.
VARIABLES = {"$__rate_interval": "1m", "$collection": ".*"}
CAPACITY_GAUGES = (
    "embedding_pipeline_capacity_docs_per_second",
    "embedding_pipeline_capacity_measured_timestamp_seconds",
)
OUTCOMES = 'sum(embedding_pipeline_documents_processed_total{outcome=~"embedded|failed"})'
WAVES = 3


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str) -> list[dict]:
        body = http_get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def get(self, path: str) -> dict:
        return json.loads(http_get(self.url + path))["data"]


@pytest.fixture
def app_env(tmp_path: Path) -> dict[str, str]:
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDPORTAL_METRICS_")}
    return {
        **env,
        "DATABASE_URL": database_url(),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "EMBEDPORTAL_IDLE_SLEEP": "0.1",
    }


@pytest.fixture
def web(app_env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    gunicorn = Path(sys.prefix) / "bin" / "gunicorn"
    args = ["embedportal.wsgi", "--config", "python:embedportal.gunicorn_conf", "--workers", "1"]
    process = subprocess.Popen(
        [str(gunicorn), *args, "--bind", f"127.0.0.1:{port}"],
        env=app_env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: reachable(url + "/metrics"), timeout=60)
        yield url
    finally:
        stop(process)


@pytest.fixture
def prom(web: str, tmp_path: Path) -> Iterator[Prometheus]:
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [RULES_GLOB],
        "scrape_configs": [{"job_name": "embedportal-web", "static_configs": [{"targets": [web.split("//")[1]]}]}],
    }
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [
            prometheus(),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = Prometheus(f"http://127.0.0.1:{port}")
    try:
        wait_for(lambda: reachable(server.url + "/-/ready"), timeout=30)
        wait_for(lambda: server.query('up{job="embedportal-web"} == 1') != [], timeout=30)
        yield server
    finally:
        stop(process)


@pytest.fixture
def worker(app_env: dict[str, str]) -> Iterator[None]:
    process = manage("run_pipeline", env=app_env, stdout=subprocess.DEVNULL)
    yield
    stop(process)


# --- what each panel query must return ----------------------------------------------------------


@dataclass
class Facts:
    """The database's figures after the waves, and whether the app exports the capacity gauges."""

    pending: int
    pending_by_collection: dict[str, int]
    failed_open: int
    capacity_exported: bool


Check = Callable[[list[dict], Facts], None]


def values(result: list[dict]) -> list[float]:
    return [float(r["value"][1]) for r in result]


def by(label: str, result: list[dict]) -> dict[str, float]:
    """The results summed by `label` (a series per collection too: every collection's is declared at 0)."""
    summed: dict[str, float] = {}
    for r in result:
        summed[r["metric"].get(label, "")] = summed.get(r["metric"].get(label, ""), 0.0) + float(r["value"][1])
    return summed


def nonempty_within(lo: float, hi: float) -> Check:
    def check(result: list[dict], facts: Facts) -> None:
        assert result, "no data"
        assert all(lo <= v <= hi for v in values(result)), values(result)

    return check


def positive(result: list[dict], facts: Facts) -> None:
    assert result and sum(values(result)) > 0 and all(v >= 0 for v in values(result)), result


def finite(result: list[dict], facts: Facts) -> None:
    assert result and all(math.isfinite(v) for v in values(result)), result


def needs_capacity(check: Check) -> Check:
    def capacity_check(result: list[dict], facts: Facts) -> None:
        if facts.capacity_exported:
            check(result, facts)
        else:
            assert result == [], "no capacity gauge exported, yet data"

    return capacity_check


def never_yet(result: list[dict], facts: Facts) -> None:
    # The 14-day projection needs 3 days of history: a fresh Prometheus has none.
    assert result == []


def queue_total(result: list[dict], facts: Facts) -> None:
    assert values(result) == [facts.pending]


def queue_per_collection(result: list[dict], facts: Facts) -> None:
    assert by("collection", result) == facts.pending_by_collection


def latency_stages(result: list[dict], facts: Facts) -> None:
    assert set(by("stage", result)) == {"chunking", "embedding", "storage", "total"}
    nonempty_within(0, 60)(result, facts)


def errors_by_type(result: list[dict], facts: Facts) -> None:
    assert by("error_type", result).get("bad_request", 0) > 0, result


def freshness_per_collection(result: list[dict], facts: Facts) -> None:
    # Every document lags its source by seconds to 10 minutes: all within hashes' 1 h SLA, none
    # within strict's 60 s (fake's documents have no source time: not judged). Approximate: the
    # ratio of two rates can come back as 99.99999999999999 when a collection has series for both
    # labels.
    assert by("collection", result) == pytest.approx({"hashes": 100, "strict": 0}), result


def freshness_overall(result: list[dict], facts: Facts) -> None:
    # 2 of every 14 judged documents (strict's) were late: the 99% objective is missed.
    [value] = values(result)
    assert 100 * 12 / 14 - 5 < value < 99, value


def no_stale_documents(result: list[dict], facts: Facts) -> None:
    assert by("collection", result) == {name: 0 for name in facts.pending_by_collection}


def reprocessing_states(result: list[dict], facts: Facts) -> None:
    assert sum(values(result)) == facts.failed_open and set(by("state", result)) == {"waiting", "retrying"}


def zero(result: list[dict], facts: Facts) -> None:
    assert values(result) == [0]


def age_buckets(result: list[dict], facts: Facts) -> None:
    buckets = by("le", result)
    assert buckets["+Inf"] == facts.failed_open and buckets["300.0"] == facts.failed_open, buckets


def per_slo(lo: float, hi: float) -> Check:
    def check(result: list[dict], facts: Facts) -> None:
        assert set(by("sloth_slo", result)) == {"freshness", "failures", "latency"}, result
        nonempty_within(lo, hi)(result, facts)

    return check


def budget_left(result: list[dict], facts: Facts) -> None:
    left = by("sloth_slo", result)
    assert set(left) == {"freshness", "failures", "latency"}
    # 1 in 7 judged documents late (strict's), 1 in 16 outcomes failed: far over budget; every document was fast.
    assert left["freshness"] < 0 and left["failures"] < 0 and left["latency"] == 1, left


def nothing_spent(result: list[dict], facts: Facts) -> None:
    # The waves embed with free models (local, and a fake provider LiteLLM has no price for), and no
    # collection has a budget: no spend to report.
    assert result == []


def free(result: list[dict], facts: Facts) -> None:
    assert result and set(values(result)) == {0.0}, result


def of_hashes(value: float) -> Check:
    # The one evaluation the run stores: hashes, in its search mode.
    def check(result: list[dict], facts: Facts) -> None:
        assert by("collection", result) == {"hashes": value}, result

    return check


EXPECTED: dict[tuple[str, str], Check] = {
    ("Pipeline Throughput", "A"): positive,
    ("Pipeline Throughput", "B"): needs_capacity(positive),
    ("Queue Depth", "A"): queue_total,
    ("Queue Depth", "B"): queue_per_collection,
    ("Queue Depth", "C"): needs_capacity(positive),
    ("Processing Latency", "A"): latency_stages,
    ("Processing Latency", "B"): latency_stages,
    ("Processing Latency", "C"): latency_stages,
    ("Error Rate", "A"): errors_by_type,
    ("Freshness SLA", "A"): freshness_per_collection,
    ("Freshness SLA", "B"): freshness_overall,
    ("Freshness SLA", "C"): no_stale_documents,
    ("Reprocessing Queue", "A"): reprocessing_states,
    ("Reprocessing Queue", "B"): zero,
    ("Reprocessing Queue Age", "A"): age_buckets,
    ("SLI (30 d)", "A"): per_slo(0.5, 1),
    ("Error budget left (30 d)", "A"): budget_left,
    ("Burn rate", "A"): per_slo(0, 1000),
    ("Burn rate", "B"): per_slo(0, 1000),
    ("Capacity", "A"): finite,
    ("Capacity", "B"): finite,
    ("Capacity", "C"): positive,
    ("Capacity", "D"): needs_capacity(positive),
    ("Headroom", "A"): needs_capacity(finite),
    ("Capacity measurement age", "A"): needs_capacity(nonempty_within(0, 10 * 365 * 86400)),
    ("Arrivals projection (14 d)", "A"): never_yet,
    ("Arrivals projection (14 d)", "B"): needs_capacity(positive),
    ("Embedding cost this month", "A"): nothing_spent,
    ("Embedding cost this month", "B"): nothing_spent,
    ("Embedding cost this month", "C"): nothing_spent,
    ("Embedding spend rate", "A"): free,
    ("Retrieval quality", "A"): of_hashes(0.85),
    ("Retrieval quality", "B"): of_hashes(0.6),
    ("Retrieval quality", "C"): of_hashes(0.9),
}


def panel_queries() -> list[tuple[str, str, str]]:
    board = json.loads(dashboard.OUTPUT.read_text(encoding="utf-8"))
    return [
        (panel["title"], target["refId"], target["expr"])
        for panel in board["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def test_every_panel_query_has_an_expectation():
    assert {(title, ref) for title, ref, _ in panel_queries()} == set(EXPECTED)


# --- the run --------------------------------------------------------------------------------------


def last_evaluation(group: dict) -> datetime:
    # RFC 3339 with nanoseconds; microseconds are plenty here.
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", group["lastEvaluation"]).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp)


def run_waves(prom: Prometheus, hashes, fake, strict) -> int:
    """Enqueue a wave, wait until it is processed and scraped; returns the outcomes counted."""
    done = 0
    now = timezone.now()
    late = now - timedelta(minutes=10)
    busy = Document.objects.filter(
        collection__in=[hashes, fake, strict], status__in=[DocumentStatus.PENDING, DocumentStatus.PROCESSING]
    )
    for wave in range(WAVES):
        docs = [IncomingDocument(f"w{wave}-{i}", f"Wave {wave}, paragraph {i}. " * 30, now) for i in range(10)]
        docs += [IncomingDocument(f"w{wave}-late{i}", f"Late {wave} {i}. " * 30, late) for i in range(2)]
        enqueue(hashes, docs)
        enqueue(strict, [IncomingDocument(f"w{wave}-s{i}", f"Strict {wave} {i}. " * 30, late) for i in range(2)])
        enqueue(fake, [IncomingDocument(f"w{wave}-ok", "a fine text"), IncomingDocument(f"w{wave}-bad", "POISON:400")])
        done += 16
        wait_for(lambda: not busy.exists(), timeout=60)
        expected = [done]
        wait_for(lambda: values(prom.query(OUTCOMES)) == expected, timeout=30)  # noqa: B023 (called at once)
    return done


@pytest.mark.django_db(transaction=True)
def test_every_panel_query_returns_its_expected_data_from_a_real_prometheus(
    hash_collection, fake_collection, fake_provider, prom, worker, web, capsys
):
    held = create_collection(name="held", model="local/hash-16", chunk_unit="characters", chunk_size=100, paused=True)
    strict = create_collection(
        name="strict", model="local/hash-16", chunk_unit="characters", freshness_sla=timedelta(seconds=60)
    )
    figures = dict(recall_at_1=0.5, recall_at_5=0.85, recall_at_10=1, mrr_at_10=0.6, ndcg_at_10=0.7, queries=10)
    RetrievalEvaluation.objects.create(collection=hash_collection, mode=hash_collection.search_mode, **figures)
    enqueue(held, [IncomingDocument(f"p{i}", f"waiting {i}") for i in range(3)])

    # The waves are changes made after the collections existed (older content is judged from its creation).
    dated = Collection.objects.filter(pk__in=[hash_collection.pk, strict.pk])
    dated.update(created_at=timezone.now() - timedelta(days=1))
    processed = run_waves(prom, hash_collection, fake_collection, strict)
    pending = Document.objects.filter(status=DocumentStatus.PENDING)
    facts = Facts(
        pending=pending.count(),
        pending_by_collection={
            c: pending.filter(collection__name=c).count() for c in ("hashes", "fake", "held", "strict")
        },
        failed_open=FailedDocument.objects.unresolved().count(),
        # A sample, not the HELP/TYPE lines every family has even when empty.
        capacity_exported=any(
            line.startswith(CAPACITY_GAUGES) for line in http_get(web + "/metrics").decode().splitlines()
        ),
    )
    assert facts.pending == 3 and facts.failed_open == WAVES
    # Rules chain through recorded series (SLI -> burn rate -> budget left; queue -> arrivals ->
    # daily peak), one group evaluation (1 s) per link: let every group run a few times on the
    # final scrape.
    settled = datetime.now(UTC) + timedelta(seconds=3)
    wait_for(lambda: all(last_evaluation(g) > settled for g in prom.get("/api/v1/rules")["groups"]), timeout=30)

    # Every rule group loads and evaluates without error on the real server.
    groups = prom.get("/api/v1/rules")["groups"]
    assert {g["file"] for g in groups} == {str(p) for p in Path(RULES_GLOB).parent.glob("*.rules.yml")}
    broken = [(r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"]
    assert broken == []

    variable = prom.get("/api/v1/label/collection/values?match[]=embedding_pipeline_collection_queue_depth")
    assert sorted(variable) == ["fake", "hashes", "held", "strict"]

    timings, failures, freshness = [], [], {}
    for title, ref, expr in panel_queries():
        started = time.perf_counter()
        result = prom.query(substitute(expr))
        timings.append(time.perf_counter() - started)
        if title == "Freshness SLA" and ref in "AB":
            freshness[ref] = {k or "all": round(v, 1) for k, v in by("collection", result).items()}
        try:
            EXPECTED[(title, ref)](result, facts)
        except AssertionError as exc:
            failures.append(f"{title}/{ref}: {expr!r} -> {result!r}: {exc}")
    assert failures == [], "\n".join(failures)

    with capsys.disabled():
        print(
            f"\n{len(timings)} panel queries evaluated in {sum(timings) * 1000:.0f} ms "
            f"(slowest {max(timings) * 1000:.1f} ms) after {processed} documents; "
            f"capacity gauges exported: {facts.capacity_exported}; % within SLA: {freshness['A']} "
            f"(rate interval), {freshness['B']} (30 d)"
        )
