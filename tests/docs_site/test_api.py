"""GET /api/v1/embedding-pipeline-operations/docs: the pages and their freshness, one page's
Markdown or HTML, and the paths it refuses."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from docs_site.generators import EmbeddingPipelineOperationsDocGenerator
from docs_site.models import DocPage
from tests.tools import client_with

pytestmark = pytest.mark.django_db
URL = "/api/v1/embedding-pipeline-operations/docs"


reader = partial(client_with, "view_docpage", app="docs_site")


@pytest.fixture
def docs(settings, tmp_path: Path) -> Path:
    """A docs folder with the generated pages, one runbook, and a secret file next to it."""
    root = tmp_path / "docs"
    settings.EMBEDPORTAL_DOCS_DIR = root
    EmbeddingPipelineOperationsDocGenerator(root).write()
    (root / "runbooks").mkdir()
    (root / "runbooks" / "tasks.md").write_text(
        "---\ntitle: Common tasks\nkind: runbook\n---\n\n# Common tasks\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    )
    (tmp_path / "secret.md").write_text("# not documentation\n")
    settings.EMBEDPORTAL_DOCS_DIR = root
    return root


def test_anonymous_and_permissionless_users_are_refused(docs: Path) -> None:
    assert APIClient().get(URL).status_code in (401, 403)
    assert client_with(app="docs_site").get(URL).status_code == 403


@pytest.mark.parametrize("url", [URL, f"{URL}/"])
def test_lists_every_page_with_kind_status_and_coverage(docs: Path, url: str) -> None:
    response = reader().get(url)
    assert response.status_code == 200, response.content
    body = response.json()
    listed = {p["path"]: p for p in body["pages"]}
    on_disk = {p.relative_to(docs).as_posix() for p in docs.rglob("*.md")}
    assert set(listed) == on_disk
    assert listed["runbooks/tasks.md"]["kind"] == "runbook" and listed["runbooks/tasks.md"]["title"] == "Common tasks"
    assert listed["reference/api.md"] | {} and listed["reference/api.md"]["kind"] == "generated"
    assert listed["reference/api.md"]["status"] == "fresh"
    assert listed["runbooks/tasks.md"]["url"] == "/docs/runbooks/tasks/"
    assert {c["kind"] for c in body["coverage"]} == {"settings", "endpoints", "metrics", "alerts", "commands"}
    assert DocPage.objects.count() == len(on_disk)  # the check's results are stored


def test_a_stale_page_is_listed_with_its_reason(docs: Path) -> None:
    page = docs / "reference" / "commands.md"
    page.write_text(page.read_text() + "\nEdited by hand.\n")
    listed = {p["path"]: p for p in reader().get(URL).json()["pages"]}
    assert listed["reference/commands.md"]["status"] == "stale"
    assert "Edited by hand." in listed["reference/commands.md"]["reason"]


def test_one_page_as_markdown_or_html(docs: Path) -> None:
    client = reader()
    markdown = client.get(URL, {"page": "runbooks/tasks.md"})
    assert markdown.status_code == 200 and markdown["Content-Type"].startswith("text/markdown")
    assert markdown.content.decode().startswith("---\ntitle: Common tasks")

    html = client.get(URL, {"page": "runbooks/tasks.md"}, HTTP_ACCEPT="text/html")
    assert html.status_code == 200 and html["Content-Type"].startswith("text/html")
    text = html.content.decode()
    assert '<h1 id="common-tasks">Common tasks</h1>' in text and "<table>" in text and "title: Common" not in text


def test_a_generated_page_is_served_live_naming_no_collection(docs: Path, hash_collection) -> None:
    # Every team reads the docs (the API and the built site alike): a table of every collection's
    # configuration named other teams' collections, models and provider hosts to each of them.
    text = reader().get(URL, {"page": "reference/configuration.md"}).content.decode()
    assert "## Current values" in text and "`EMBEDPORTAL_DEFAULT_MODEL`" in text
    assert "hashes" not in text and "local/hash-16" not in text


def test_an_unknown_page_is_a_404_naming_it(docs: Path) -> None:
    response = reader().get(URL, {"page": "runbooks/nothing-here.md"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 404
    assert "runbooks/nothing-here.md" in response.json()["error"]["message"]


# An empty page is refused as every empty parameter is (test_a_filter_given_empty_is_a_400_naming_it...).
@pytest.mark.parametrize("page", ["../secret.md", "runbooks/../../secret.md", "/etc/passwd", "runbooks\\..\\x.md"])
def test_paths_leaving_the_docs_folder_are_refused(docs: Path, page: str) -> None:
    response = reader().get(URL, {"page": page}, HTTP_ACCEPT="application/json")
    assert response.status_code == 400, response.content
    assert "docs folder" in response.content.decode()


def test_a_symlink_out_of_the_docs_folder_is_refused(docs: Path) -> None:
    os.symlink(docs.parent / "secret.md", docs / "runbooks" / "link.md")
    response = reader().get(URL, {"page": "runbooks/link.md"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert "not documentation" not in response.content.decode()


def test_errors_are_json_but_for_a_browsers_page_and_the_lists_format_is_checked(docs: Path) -> None:
    # As Markdown, an error was JSON text sent as text/markdown; ?format=xml on the list answered the list.
    missing = reader().get(URL, {"page": "runbooks/nothing-here.md"}, HTTP_ACCEPT="text/markdown")
    assert missing.status_code == 404 and missing["Content-Type"] == "application/json"
    assert "runbooks/nothing-here.md" in missing.json()["error"]["message"]
    browser = reader().get(URL, {"page": "runbooks/nothing-here.md"}, HTTP_ACCEPT="text/html")
    assert browser.status_code == 404 and browser["Content-Type"].startswith("text/html")
    assert "runbooks/nothing-here.md" in browser.content.decode()
    listed = reader().get(URL, {"format": "xml"})
    assert listed.status_code == 400 and listed.json()["error"]["details"] == {
        "format": ["unknown format 'xml' for the list; known: json"]
    }
    assert reader().get(URL, {"format": "json"}).status_code == 200
