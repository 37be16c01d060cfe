"""An operator opens the benchmark trends from the Performance page, in a real browser: each figure
is charted with the vendored Chart.js, the regressed runs and the change point marked; the ingest
benchmarks' per-stage percentiles are charted one chart per stage."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from selenium.webdriver.common.by import By

from testing.benchmarks import stages
from tests.conftest import admin_login
from tests.factories import STEP_AT, stage_history, step_history

pytestmark = pytest.mark.django_db(transaction=True)


def test_operator_reads_benchmark_trends_with_the_regression_marked(live_server, browser):
    User.objects.create_superuser("ops", "ops@example.com", "correct horse battery")
    step_history()

    admin_login(browser, live_server.url)
    browser.find_element(By.LINK_TEXT, "Performance").click()
    browser.find_element(By.LINK_TEXT, "Benchmark trends").click()

    headings = [h.text for h in browser.find_elements(By.CSS_SELECTOR, ".benchmark-trends .module h2")]
    assert headings == [
        "ingest_steady · docs_per_second (docs/s, higher is better)",
        "search · p95_ms (ms, lower is better)",
    ]
    # Chart.js drew the search chart: band, median, the regressed runs in red, the change point.
    search = "Chart.getChart('trend-1')"
    labels = browser.execute_script(f"return {search}.data.datasets.map(d => d.label)")
    assert labels == ["samples min", "samples (min–max)", "median", "regression", "change point"]
    regressed = browser.execute_script(f"return {search}.data.datasets[3].data")
    assert [i for i, v in enumerate(regressed) if v is not None] == [STEP_AT, STEP_AT + 1]
    steps = browser.execute_script(f"return {search}.data.datasets[4].data")
    assert [i for i, v in enumerate(steps) if v is not None] == [STEP_AT]
    width = browser.execute_script("return document.getElementById('trend-1').width")
    assert width > 0
    assert "commit-8" in browser.find_element(By.CSS_SELECTOR, ".change-point").text
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and e.get("source") == "javascript"]


def test_operator_reads_each_stages_percentiles_over_the_benchmark_runs(live_server, browser):
    User.objects.create_superuser("ops", "ops@example.com", "correct horse battery")
    stage_history()

    admin_login(browser, live_server.url, "/admin/testing/benchmarkrun/trends/?machine=m&suite=quick")

    gated = [h.text for h in browser.find_elements(By.CSS_SELECTOR, ".benchmark-trends .module:not(.stage-figures) h2")]
    assert gated == ["ingest_steady · docs_per_second (docs/s, higher is better)"]
    heading = browser.find_element(By.CSS_SELECTOR, "#stages-ingest_steady h2").text
    assert heading.startswith("ingest_steady · seconds per document by stage") and "not gated" in heading
    # One chart per stage, each with its p50, p95 and p99 over the six runs, drawn with a width.
    charts = browser.execute_script(
        "return [...document.querySelectorAll('.stage-figures canvas')].map(c => "
        "[c.id, Chart.getChart(c).data.datasets.map(d => d.label), c.width > 0])"
    )
    assert charts == [[f"stage-trend-ingest_steady-{s}", ["p50", "p95", "p99"], True] for s in stages.STAGES]
    p95 = browser.execute_script("return Chart.getChart('stage-trend-ingest_steady-storage').data.datasets[1].data")
    assert p95 == pytest.approx([0.2 + i / 10 for i in range(6)])
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE" and e.get("source") == "javascript"]
