"""An operator logs in, reads the pipeline overview and pauses a collection, in a real browser."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from pipeline.models import Collection
from pipeline.pipeline import EmbeddingIngestionPipeline
from pipeline.queue import IncomingDocument, enqueue
from tests.conftest import admin_login

pytestmark = pytest.mark.django_db(transaction=True)


def test_operator_reads_the_overview_and_pauses_a_collection(live_server, browser, hash_collection):
    User.objects.create_superuser("ops", "ops@example.com", "correct horse battery")
    enqueue(hash_collection, [IncomingDocument(f"d{i}", f"Paragraph {i}. " * 30) for i in range(3)])
    EmbeddingIngestionPipeline().drain()
    enqueue(hash_collection, [IncomingDocument(f"new{i}", f"fresh text {i}") for i in range(2)])

    admin_login(browser, live_server.url)

    browser.find_element(By.LINK_TEXT, "Pipeline overview").click()
    assert browser.find_element(By.CSS_SELECTOR, "#tile-queue .figure").text == "2"
    assert browser.find_element(By.CSS_SELECTOR, "#tile-workers .figure").text == "1"
    assert browser.find_element(By.CSS_SELECTOR, "#tile-health .figure").text == "healthy"
    checks = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "#health-checks tbody tr")]
    assert [c.split()[:2] for c in checks] == [["model", "pass"], ["pgvector", "pass"], ["queue", "pass"]]
    # Chart.js (vendored) drew the last hour per minute: 60 bars, the last one holding our 3 documents.
    bars = browser.execute_script("return Chart.getChart('throughput-chart').data.datasets[0].data")
    assert len(bars) == 60 and bars[-1] == 3
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and e.get("source") == "javascript"]
    stages = [row.text.split()[0] for row in browser.find_elements(By.CSS_SELECTOR, "#latency tbody tr")]
    assert stages[:4] == ["chunking", "embedding", "storage", "total"]
    row = browser.find_element(By.CSS_SELECTOR, "#collections tbody tr").text.split()
    assert row[:3] == ["hashes", "local/hash-16", "active"] and row[3:] == ["2", "0", "3", "0"]

    browser.find_element(By.LINK_TEXT, "Pause, resume or re-embed collections").click()
    browser.find_element(By.CSS_SELECTOR, f"input[name=_selected_action][value='{hash_collection.pk}']").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("pause_collections")
    browser.find_element(By.CSS_SELECTOR, "button[name=index]").click()
    message = browser.find_element(By.CSS_SELECTOR, "ul.messagelist li").text
    assert message.startswith("Paused 1 collection(s); 0 were already paused.")
    assert Collection.objects.get().paused

    browser.get(f"{live_server.url}/admin/pipeline/collection/overview/")
    row = browser.find_element(By.CSS_SELECTOR, "#collections tbody tr").text.split()
    assert row[2] == "paused"
