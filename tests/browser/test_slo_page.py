"""An operator reads the SLOs and capacity page in a real browser: Chart.js draws every chart from
the database history, and a window without traffic says "no data"."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from pipeline import history
from tests.conftest import admin_login
from tests.factories import capacity_measurement
from tests.pipeline.test_history import batch

pytestmark = pytest.mark.django_db(transaction=True)

CHARTS = ("throughput", "queue", "latency", "failures", "freshness", "arrivals")


def js_errors(browser) -> list[str]:
    """Errors thrown by scripts or logged with console.error (not failed loads such as /favicon.ico)."""
    return [
        e["message"]
        for e in browser.get_log("browser")
        if e["level"] == "SEVERE" and e.get("source") in ("javascript", "console-api")
    ]


def test_operator_reads_slos_and_capacity_with_charts_and_no_data(live_server, browser, hash_collection):
    User.objects.create_superuser("ops", "ops@example.com", "correct horse battery")
    two_hours_ago = timezone.now() - timedelta(hours=2)
    # Traffic two hours ago only: the last hour has no events ("no data"), the last day has.
    history.record_arrivals(hash_collection.pk, 50, at=two_hours_ago)
    batch(hash_collection, embedded=48, failed=2, latency_seconds=2, at=two_hours_ago)
    history.sample_queue_depth(at=two_hours_ago)
    capacity_measurement(usl_lambda=None, fit_note="underdetermined: 1 worker count (2) for 3 parameters")

    admin_login(browser, live_server.url)
    browser.find_element(By.LINK_TEXT, "SLOs and capacity").click()

    failures = browser.find_element(By.ID, "slo-failures")  # waits for the page (implicit wait)
    assert browser.title.startswith("SLOs and capacity")
    assert failures.find_element(By.CSS_SELECTOR, ".compliance-1h").text == "no data"
    assert failures.find_element(By.CSS_SELECTOR, ".compliance-1d").text == "96.00%"
    assert failures.find_element(By.CSS_SELECTOR, ".burn-1h").text == "no data"
    assert failures.find_element(By.CSS_SELECTOR, ".budget").text == "-3900.0%"
    freshness = browser.find_element(By.ID, "slo-freshness")
    assert [td.text for td in freshness.find_elements(By.CSS_SELECTOR, "td[class^=compliance]")] == ["no data"] * 3
    assert freshness.find_element(By.CSS_SELECTOR, ".state").text == "no data"
    assert browser.find_element(By.ID, "capacity-needs").text.startswith("needs at least 3 days of hourly arrivals")

    browser.find_element(By.NAME, "range").send_keys("24h")
    browser.find_element(By.CSS_SELECTOR, "#slo-filters input[type=submit]").click()
    # The new page, once charts.js has drawn it (elements of the old page would be stale).
    WebDriverWait(browser, 10).until(
        lambda b: (
            "range=24h" in b.current_url
            and b.execute_script("return window.Chart !== undefined && Chart.getChart('chart-arrivals') !== undefined")
        )
    )
    for name in CHARTS:
        assert browser.find_element(By.ID, f"chart-{name}").tag_name == "canvas"
        assert browser.execute_script(f"return Chart.getChart('chart-{name}') !== undefined"), name
    # 24 h in 5-minute steps; the throughput chart has the capacity line (2 workers measured, 8.5 docs/s).
    datasets = browser.execute_script(
        "return Chart.getChart('chart-throughput').data.datasets.map(d => [d.label, d.data.length, d.data[0]])"
    )
    assert datasets[0][:2] == ["embedded / min", 288]
    assert ["capacity / min", 288, 510] in datasets
    embedded = browser.execute_script("return Chart.getChart('chart-throughput').data.datasets[0].data")
    assert sum(embedded) == pytest.approx(48 / 5)  # 48 documents in one 5-minute step, per minute
    assert not js_errors(browser)


def test_a_javascript_error_would_be_caught(live_server, browser):
    # The check above can fail: an error thrown by a page script is in the browser log.
    browser.get(f"{live_server.url}/admin/login/")
    browser.execute_script("setTimeout(() => { throw new Error('boom') }, 0)")
    WebDriverWait(browser, 5).until(lambda b: b.execute_script("return true"))
    found: list[str] = []
    WebDriverWait(browser, 5).until(lambda b: found.extend(js_errors(b)) or found)
    assert any("boom" in message for message in found)
