"""The mkdocs site: builds with --strict, offline (Mermaid vendored, nothing from a CDN), and is
served under /docs/ to signed-in staff only."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]


def test_mkdocs_build_strict_passes(tmp_path: Path) -> None:
    result = subprocess.run(
        # Not -q: it hides the warnings --strict counts, and a broken link then passed.
        [str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "architecture" / "index.html").is_file()


@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory, django_db_blocker) -> Path:
    site_dir = tmp_path_factory.mktemp("built") / "site"
    with django_db_blocker.unblock():
        call_command("docs", "build", "--site-dir", str(site_dir))
    return site_dir


def test_docs_build_renders_live_pages_and_writes_the_manifest(built_site: Path) -> None:
    config = (built_site / "reference" / "configuration" / "index.html").read_text()
    assert "Current values" in config  # live sections are in the built site, not in Git
    manifest = json.loads((built_site / "_manifest.json").read_text())
    assert manifest["from_git"] is True
    assert "runbooks/failures.md" in manifest["pages"]
    covers = manifest["pages"]["runbooks/failures.md"]["covers"]
    assert "alert:EmbeddingPipelineRateLimited" in covers and "setting:EMBEDPORTAL_BATCH_TRIES" in covers
    assert all(re.fullmatch(r"[0-9a-f]{64}", f["sha256"]) for f in manifest["files"].values())


def test_the_site_loads_nothing_from_another_host(built_site: Path) -> None:
    assert (built_site / "assets" / "javascripts" / "mermaid.min.js").stat().st_size > 1_000_000
    for page in built_site.rglob("*.html"):
        html = page.read_text()
        # What a browser loads by itself: scripts, images, frames, stylesheets and preloads.
        loaded = re.findall(r"""<(?:script|img|iframe|source)\b[^>]*\ssrc=["']((?:https?:)?//[^"']+)""", html)
        loaded += re.findall(r"""<link\b[^>]*\shref=["']((?:https?:)?//[^"']+)""", html)
        assert loaded == [], (page, loaded)
        assert "fonts.googleapis" not in html and "unpkg.com" not in html
    architecture = (built_site / "reference" / "architecture" / "index.html").read_text()
    assert '<pre class="mermaid"><code>flowchart LR' in architecture
    assert "assets/javascripts/mermaid.min.js" in architecture


@pytest.mark.django_db
def test_docs_are_served_to_staff_only(client, settings, built_site: Path) -> None:
    settings.EMBEDPORTAL_DOCS_SITE_DIR = built_site
    anonymous = client.get("/docs/")
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    User.objects.create_user("user", password="pw")
    client.login(username="user", password="pw")
    assert client.get("/docs/").status_code == 302  # signed in but not staff

    User.objects.create_user("ops", password="pw", is_staff=True)
    client.login(username="ops", password="pw")
    home = client.get("/docs/")
    assert home.status_code == 200 and b"embedportal operations" in b"".join(home.streaming_content)
    assert client.get("/docs/runbooks/tasks/").status_code == 200
    assert client.get("/docs/runbooks/tasks")["Location"] == "/docs/runbooks/tasks/"
    assert client.get("/docs/../settings.py").status_code == 404
    assert client.get("/docs/%2e%2e/_manifest.json").status_code == 404


@pytest.mark.django_db
def test_an_unbuilt_site_says_how_to_build_it(admin_client, settings, tmp_path: Path) -> None:
    settings.EMBEDPORTAL_DOCS_SITE_DIR = tmp_path / "nothing"
    response = admin_client.get("/docs/")
    assert response.status_code == 503 and b"manage.py docs build" in response.content
