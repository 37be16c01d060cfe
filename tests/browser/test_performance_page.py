"""An operator reads the Performance page and applies a recommendation, in a real browser."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from selenium.webdriver.common.by import By

from pipeline.models import Collection, OptimizationChange
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from tests.conftest import admin_login
from tests.factories import capacity_measurement
from tests.pipeline.test_optimizer import embedding_bound

pytestmark = pytest.mark.django_db(transaction=True)


def test_operator_reads_the_performance_page_and_applies_a_recommendation(
    live_server, browser, hash_collection, settings
):
    User.objects.create_superuser("ops", "ops@example.com", "correct horse battery")
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"Paragraph {i}. " * 30) for i in range(4)])
    EmbeddingIngestionPipeline().drain()
    embedding_bound(hash_collection)
    settings.EMBEDPORTAL_CAPACITY_WORKERS = 2
    capacity_measurement()

    admin_login(browser, live_server.url)
    browser.find_element(By.LINK_TEXT, "Performance").click()

    stages = [row.text.split()[0] for row in browser.find_elements(By.CSS_SELECTOR, "#stages tbody tr")]
    assert stages == ["queue_wait", "claim", "chunking", "embedding", "storage", "total"]
    total = browser.find_element(By.CSS_SELECTOR, "#stages tbody tr:last-child").text.split()
    assert total[4] == "124"  # 4 real documents and 12 batches of 10
    assert browser.find_element(By.ID, "bottleneck").text.startswith("Bottleneck: embedding")
    # Chart.js (vendored) drew p50/p95/p99 of every stage, throughput against capacity, SLOs over time.
    stages = browser.execute_script(
        "return [...document.querySelectorAll('#stage-trends canvas')].map(c => "
        "[c.id, Chart.getChart(c).data.datasets.map(d => d.label), c.width > 0])"
    )
    assert stages == [
        [f"trend-{stage}", ["p50", "p95", "p99"], True]
        for stage in ("queue_wait", "claim", "chunking", "embedding", "storage", "total")
    ]
    p95 = browser.execute_script("return Chart.getChart('trend-embedding').data.datasets[1].data")
    assert len(p95) == 24 and any(v is not None for v in p95) and None in p95
    throughput = browser.execute_script(
        "return Chart.getChart('trend-throughput').data.datasets.map(d => [d.label, d.data[0]])"
    )
    assert throughput[0][0] == "docs/s stored"
    assert throughput[1] == ["capacity of 1 pod(s) x 2 worker(s) (local/hash-16)", 8.5]
    slo_lines = browser.execute_script("return Chart.getChart('trend-slos').data.datasets.map(d => d.label)")
    assert slo_lines == ["document_latency", "throughput_per_worker", "held at 0.95 (latency)"]
    slos = [row.text.split()[0] for row in browser.find_elements(By.CSS_SELECTOR, "#slos tbody tr")]
    assert slos == ["document_latency", "search_latency", "throughput_per_worker"]
    assert "hashes" in browser.find_element(By.ID, "costs").text

    browser.find_element(By.CSS_SELECTOR, "#rec-batch-size-hashes button").click()

    message = browser.find_element(By.CSS_SELECTOR, "ul.messagelist li").text
    assert message.startswith("Applied: hashes.batch_size 16 -> 32: kept if the next batches take fewer worker seconds")
    assert Collection.objects.get().batch_size == 32
    assert OptimizationChange.objects.get().applied_by == "ops"
    assert "applied" in browser.find_element(By.ID, "changes").text
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and e.get("source") == "javascript"]
