"""An operator reads the Performance page and applies a recommendation, in a real browser."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from selenium.webdriver.common.by import By

from pipeline.models import Collection, OptimizationChange
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from tests.conftest import admin_login
from tests.pipeline.test_optimizer import embedding_bound

pytestmark = pytest.mark.django_db(transaction=True)


def test_operator_reads_the_performance_page_and_applies_a_recommendation(live_server, browser, hash_collection):
    User.objects.create_superuser("ops", "ops@example.com", "correct horse battery")
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"Paragraph {i}. " * 30) for i in range(4)])
    EmbeddingIngestionPipeline().drain()
    embedding_bound(hash_collection)

    admin_login(browser, live_server.url)
    browser.find_element(By.LINK_TEXT, "Performance").click()

    stages = [row.text.split()[0] for row in browser.find_elements(By.CSS_SELECTOR, "#stages tbody tr")]
    assert stages == ["queue_wait", "claim", "chunking", "embedding", "storage", "total"]
    total = browser.find_element(By.CSS_SELECTOR, "#stages tbody tr:last-child").text.split()
    assert total[4] == "124"  # 4 real documents and 12 batches of 10
    assert browser.find_element(By.ID, "bottleneck").text.startswith("Bottleneck: embedding")
    # Chart.js (vendored) drew the p95 trend of each processing stage and the total.
    labels = browser.execute_script("return Chart.getChart('trend-chart').data.datasets.map(d => d.label)")
    assert labels == ["claim", "chunking", "embedding", "storage", "total"]
    slos = [row.text.split()[0] for row in browser.find_elements(By.CSS_SELECTOR, "#slos tbody tr")]
    assert slos == ["document_latency", "search_latency", "throughput_per_worker"]
    assert "hashes" in browser.find_element(By.ID, "costs").text

    browser.find_element(By.CSS_SELECTOR, "#rec-batch-size-hashes button").click()

    message = browser.find_element(By.CSS_SELECTOR, "ul.messagelist li").text
    assert message.startswith("Applied: hashes.batch_size 16 -> 32.")
    assert Collection.objects.get().batch_size == 32
    assert OptimizationChange.objects.get().applied_by == "ops"
    assert "applied" in browser.find_element(By.ID, "changes").text
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and e.get("source") == "javascript"]
