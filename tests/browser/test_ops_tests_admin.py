"""An operator reads the operations test runs, a scenario's history, the flaky list and the
coverage matrix, and starts a run, in a real browser."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django_q.models import OrmQ
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from testing.models import TestResult, TestRun
from testing.registry import select
from tests.conftest import admin_login
from tests.factories import stored_result

pytestmark = pytest.mark.django_db(transaction=True)


def result(scenario: str, outcome: str, component: str = "search") -> TestResult:
    message = "" if outcome == "passed" else "canary not at rank 1"
    return stored_result(scenario, outcome, code="v1", config="c", component=component, duration=1.5, message=message)


def test_operator_reads_results_flaky_coverage_and_runs_tests_now(live_server, browser):
    User.objects.create_superuser("ops", "ops@example.com", "correct horse battery")
    result("canary_embedded_and_found", "passed")
    result("canary_embedded_and_found", "failed")
    result("canary_embedded_and_found", "passed")

    admin_login(browser, live_server.url, "/admin/testing/testrun/")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")) == 3

    browser.find_element(By.CSS_SELECTOR, ".object-tools a[href$='/flaky/']").click()
    row = browser.find_element(By.CSS_SELECTOR, "#flaky tbody tr").text
    assert row.startswith("canary_embedded_and_found normal 1.00 3 2 1 0")
    browser.find_element(By.LINK_TEXT, "canary_embedded_and_found").click()  # its history
    assert len(browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")) == 3

    browser.get(f"{live_server.url}/admin/testing/testrun/coverage/")
    assert browser.find_element(By.ID, "coverage-ratio").text.startswith("17% of the component")
    covered = browser.find_elements(By.CSS_SELECTOR, "#coverage td.covered")
    assert len(covered) == 5 and all("canary_embedded_and_found" in td.text for td in covered)

    browser.get(f"{live_server.url}/admin/testing/testrun/")
    Select(browser.find_element(By.NAME, "category")).select_by_value("edge")
    browser.find_element(By.NAME, "run-now").click()
    message = browser.find_element(By.CSS_SELECTOR, "ul.messagelist li").text
    run = TestRun.objects.get(status="queued")
    assert message == (
        f"Test run {run.pk} queued ({len(select(categories=['edge']))} scenarios); "
        "no test runner is running: start `manage.py run_test_runner`."
    )
    assert run.selection["categories"] == ["edge"] and not OrmQ.objects.exists()
