"""An operator checks the documentation status in the admin and reads a diagram on the site,
in a real Chromium: the status page lists pages with their freshness, and Mermaid (vendored,
no network) draws the architecture."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from docs_site.generators import MODULES
from tests.conftest import admin_login

pytestmark = pytest.mark.django_db(transaction=True)


def login(browser, live_server) -> None:
    User.objects.create_superuser("ops", "ops@example.com", "correct horse battery")
    admin_login(browser, live_server.url)


def test_operator_checks_documentation_status(live_server, browser, settings, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    settings.EMBEDPORTAL_DOCS_DIR = docs
    call_command("docs", "generate")
    (docs / "guide.md").write_text("---\ncovers:\n  settings: [EMBEDPORTAL_GONE]\n---\n\n# Old guide\n")
    login(browser, live_server)

    browser.get(f"{live_server.url}/admin/docs_site/docpage/")
    browser.find_element(By.ID, "docs-status-link").click()
    assert "No check has run yet" in browser.find_element(By.ID, "docs-pages").text
    browser.find_element(By.ID, "docs-recheck").click()

    message = browser.find_element(By.CSS_SELECTOR, "ul.messagelist li").text
    # The generated reference pages and the guide.
    assert message.startswith(f"Checked {len(MODULES) + 1} page(s): ") and message.endswith(" stale.")
    rows = {
        row.find_element(By.CSS_SELECTOR, "td.path").text: row
        for row in browser.find_elements(By.CSS_SELECTOR, "#docs-pages tbody tr")
    }
    assert len(rows) == len(MODULES) + 1
    stale = rows["guide.md"]
    assert stale.get_attribute("class") == "stale"
    assert stale.find_element(By.CSS_SELECTOR, "td.status").text == "stale"
    assert "setting EMBEDPORTAL_GONE" in stale.text
    assert rows["reference/api.md"].find_element(By.CSS_SELECTOR, "td.status").text == "fresh"
    kinds = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#docs-coverage td.kind")]
    assert sorted(kinds) == ["alerts", "commands", "endpoints", "metrics", "settings"]
    assert browser.find_element(By.ID, "count-stale").text == "Stale: 1"


def test_operator_reads_the_architecture_diagram_offline(live_server, browser, settings, tmp_path: Path) -> None:
    settings.EMBEDPORTAL_DOCS_SITE_DIR = tmp_path / "site"
    call_command("docs", "build", "--no-live")
    login(browser, live_server)

    browser.get(f"{live_server.url}/docs/reference/architecture/")
    # Material draws each diagram into a closed shadow root: the drawn diagram shows as its size.
    diagram_height = "const d = document.querySelector('div.mermaid'); return d ? d.getBoundingClientRect().height : 0;"
    WebDriverWait(browser, 20).until(lambda b: b.execute_script(diagram_height) > 100)
    # And the vendored Mermaid (served from /docs/, no network) draws the page's own diagram.
    source = (Path(settings.EMBEDPORTAL_DOCS_DIR) / "reference" / "architecture.md").read_text()
    diagram = source.split("```mermaid\n", 1)[1].split("```", 1)[0]
    svg = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "mermaid.render('check', arguments[0]).then(r => done(r.svg), e => done('error: ' + e));",
        diagram,
    )
    assert svg.startswith("<svg") and "embedportal-worker" in svg and "embedportal-db" in svg
    scripts = [s.get_attribute("src") for s in browser.find_elements(By.CSS_SELECTOR, "script[src]")]
    assert all(src.startswith(live_server.url) for src in scripts), scripts
