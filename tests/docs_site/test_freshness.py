"""Freshness of hand-written and generated pages, from Git history or, without Git, the build
manifest: real repositories in a temporary folder, real commits."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.utils import timezone

from docs_site import freshness, pages, site
from docs_site.choices import Freshness
from docs_site.history import History
from docs_site.models import DocPage

CONFIG = """
Setting("EMBEDPORTAL_CLAIM_BATCH", "int", 32, "Documents a worker claims at a time.")
Setting("EMBEDPORTAL_LEASE_SECONDS", "int", 300, "A claim's lease.")
"""
PAGE = """---
title: Scaling
kind: runbook
reviewed: {reviewed}
review_interval_days: 90
covers:
  files: [pipeline/queue.py]
  settings: [EMBEDPORTAL_CLAIM_BATCH]
---

# Scaling

Workers claim EMBEDPORTAL_CLAIM_BATCH documents at a time.
"""


def git(repo: Path, *args: str, when: int | None = None) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    if when is not None:
        env |= {"GIT_AUTHOR_DATE": f"@{when} +0000", "GIT_COMMITTER_DATE": f"@{when} +0000"}
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def write(repo: Path, path: str, text: str) -> None:
    file = repo / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with a covered source file, the settings registry and one runbook, committed."""
    git(tmp_path, "init", "-q", "-b", "main")
    write(tmp_path, "pipeline/queue.py", "CLAIM = 'skip locked'\n")
    write(tmp_path, "embedportal/config.py", CONFIG)
    write(tmp_path, "docs/runbooks/scaling.md", PAGE.format(reviewed=timezone.now().date()))
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "first", when=1_700_000_000)
    return tmp_path


def status_of(repo: Path, path: str = "runbooks/scaling.md", history: History | None = None) -> DocPage:
    history = history or History(repo)
    page = pages.get(path, repo / "docs")
    return freshness.check_handwritten(page, history, timezone.now(), repo / "docs")


def test_a_page_is_fresh_until_a_covered_file_changes_after_it(repo: Path) -> None:
    assert status_of(repo).status == Freshness.FRESH

    write(repo, "pipeline/queue.py", "CLAIM = 'advisory locks'\n")
    git(repo, "commit", "-q", "-am", "change the queue", when=1_700_003_600)

    status = status_of(repo)
    assert status.status == Freshness.STALE
    assert status.changed == ["file:pipeline/queue.py"]
    assert "file:pipeline/queue.py" in status.reason
    assert status.lag_seconds == 3600  # the change came an hour after the page's last commit


def test_updating_the_page_after_the_change_makes_it_fresh_again(repo: Path) -> None:
    write(repo, "pipeline/queue.py", "CLAIM = 'advisory locks'\n")
    git(repo, "commit", "-q", "-am", "change the queue", when=1_700_003_600)
    write(repo, "docs/runbooks/scaling.md", (repo / "docs/runbooks/scaling.md").read_text() + "\nNow with locks.\n")
    git(repo, "commit", "-q", "-am", "update the runbook", when=1_700_007_200)

    status = status_of(repo)
    assert status.status == Freshness.FRESH and status.lag_seconds == 0


def test_a_covered_setting_is_compared_entry_by_entry(repo: Path) -> None:
    # Another setting's entry changes: the page covering EMBEDPORTAL_CLAIM_BATCH stays fresh.
    write(repo, "embedportal/config.py", CONFIG.replace("A claim's lease.", "A claim's lease (seconds)."))
    git(repo, "commit", "-q", "-am", "reword another setting", when=1_700_001_000)
    assert status_of(repo).status == Freshness.FRESH

    write(repo, "embedportal/config.py", CONFIG.replace("32,", "64,"))
    git(repo, "commit", "-q", "-am", "bigger claims", when=1_700_002_000)
    status = status_of(repo)
    assert status.status == Freshness.STALE
    assert status.changed == ["setting:EMBEDPORTAL_CLAIM_BATCH"]


def test_an_uncommitted_change_to_a_covered_file_counts(repo: Path) -> None:
    write(repo, "pipeline/queue.py", "CLAIM = 'work in progress'\n")
    status = status_of(repo)
    assert status.status == Freshness.STALE and status.lag_seconds > 0


def test_covering_something_that_no_longer_exists_is_stale(repo: Path) -> None:
    text = (repo / "docs/runbooks/scaling.md").read_text().replace("[pipeline/queue.py]", "[pipeline/gone.py]")
    write(repo, "docs/runbooks/scaling.md", text.replace("[EMBEDPORTAL_CLAIM_BATCH]", "[EMBEDPORTAL_NO_SUCH]"))
    git(repo, "commit", "-q", "-am", "cover missing things", when=1_700_001_000)
    status = status_of(repo)
    assert status.status == Freshness.STALE
    assert "file pipeline/gone.py" in status.reason and "setting EMBEDPORTAL_NO_SUCH" in status.reason


def test_review_is_due_after_the_interval(repo: Path) -> None:
    write(repo, "docs/runbooks/scaling.md", PAGE.format(reviewed="2020-01-01"))
    git(repo, "commit", "-q", "-am", "old review", when=1_700_001_000)
    status = status_of(repo)
    assert status.status == Freshness.REVIEW_DUE
    assert status.review_due_at == datetime(2020, 3, 31, tzinfo=UTC)
    assert "2020-01-01" in status.reason and status.lag_seconds == 0


def test_without_git_the_build_manifest_decides(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """As in a container: the manifest written at build time holds the page's update time and the
    covered items' hashes; a covered file changed after the build makes the page stale."""
    site_dir = tmp_path_factory.mktemp("site")
    data = site.manifest(History(repo), repo / "docs")
    (site_dir / "_manifest.json").write_text(json.dumps(data))
    assert data["pages"]["runbooks/scaling.md"]["updated_at"] == 1_700_000_000
    subprocess.run(["rm", "-rf", str(repo / ".git")], check=True)

    no_git = History(repo, manifest=site_dir / "_manifest.json")
    assert not no_git.git
    assert status_of(repo, history=no_git).status == Freshness.FRESH

    write(repo, "pipeline/queue.py", "CLAIM = 'patched in the image'\n")
    status = status_of(repo, history=History(repo, manifest=site_dir / "_manifest.json"))
    assert status.status == Freshness.STALE and status.changed == ["file:pipeline/queue.py"]


def test_a_page_stale_when_the_image_is_built_stays_stale_in_the_image(
    repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The manifest records what the page covered as of its last commit, not the build's files."""
    write(repo, "pipeline/queue.py", "CLAIM = 'advisory locks'\n")
    git(repo, "commit", "-q", "-am", "change the queue", when=1_700_003_600)
    with_git = status_of(repo)
    assert with_git.status == Freshness.STALE

    site_dir = tmp_path_factory.mktemp("site")
    (site_dir / "_manifest.json").write_text(json.dumps(site.manifest(History(repo), repo / "docs")))
    subprocess.run(["rm", "-rf", str(repo / ".git")], check=True)
    in_image = status_of(repo, history=History(repo, manifest=site_dir / "_manifest.json"))
    assert in_image.status == Freshness.STALE and in_image.changed == ["file:pipeline/queue.py"]
    assert in_image.lag_seconds == with_git.lag_seconds == 3600


def test_a_setting_moved_between_the_registry_files_is_the_same_setting(repo: Path) -> None:
    claim = CONFIG.strip().splitlines()[0]
    write(repo, "embedportal/config.py", CONFIG.replace(claim, ""))
    write(repo, "embedportal/config_operations.py", claim + "\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "move a setting", when=1_700_001_000)
    assert status_of(repo).status == Freshness.FRESH
    write(repo, "embedportal/config_operations.py", claim.replace("at a time", "per claim") + "\n")
    git(repo, "commit", "-q", "-am", "reword it where it lives now", when=1_700_002_000)
    assert status_of(repo).changed == ["setting:EMBEDPORTAL_CLAIM_BATCH"]


def test_a_hand_edited_generated_page_is_stale_naming_what_differs(settings, tmp_path: Path) -> None:
    from docs_site.generators import EmbeddingPipelineOperationsDocGenerator

    docs = tmp_path / "docs"
    settings.EMBEDPORTAL_DOCS_DIR = docs
    EmbeddingPipelineOperationsDocGenerator(docs).write()
    page = docs / "reference" / "metrics.md"
    page.write_text(page.read_text().replace("embedding_pipeline_errors_total", "embedding_pipeline_oops_total"))

    statuses = {s.path: s for s in freshness.check_pages(docs)}
    assert statuses["reference/metrics.md"].status == Freshness.STALE
    assert "embedding_pipeline_oops_total" in statuses["reference/metrics.md"].reason
    assert statuses["reference/metrics.md"].lag_seconds > 0
    assert statuses["reference/commands.md"].status == Freshness.FRESH


def test_a_setting_is_compared_even_when_the_registry_did_not_parse_at_the_page_commit(repo: Path) -> None:
    write(repo, "embedportal/config.py", CONFIG + "def broken(:\n")
    write(repo, "docs/runbooks/scaling.md", (repo / "docs/runbooks/scaling.md").read_text() + "\nReviewed.\n")
    git(repo, "commit", "-q", "-am", "a broken registry and a page update", when=1_700_001_000)
    assert status_of(repo).status == Freshness.FRESH

    # The repair leaves the entry as it was (only its layout changes): still fresh.
    relaid = CONFIG.replace(
        'Setting("EMBEDPORTAL_CLAIM_BATCH", "int", 32,', 'Setting(\n    "EMBEDPORTAL_CLAIM_BATCH",\n    "int",\n    32,'
    )
    write(repo, "embedportal/config.py", relaid)
    git(repo, "commit", "-q", "-am", "repair", when=1_700_002_000)
    assert status_of(repo).status == Freshness.FRESH

    write(repo, "embedportal/config.py", relaid.replace("32,", "64,"))
    git(repo, "commit", "-q", "-am", "bigger claims", when=1_700_003_000)
    status = status_of(repo)
    assert status.status == Freshness.STALE and status.changed == ["setting:EMBEDPORTAL_CLAIM_BATCH"]


def test_a_source_this_machine_lacks_does_not_make_a_generated_page_stale(
    settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image has no kubectl: the committed architecture page, rendered from the overlay where
    kubectl is, is not reported stale for lacking it; the reason names what was not there."""
    from docs_site.generators import EmbeddingPipelineOperationsDocGenerator, architecture

    docs = tmp_path / "docs"
    settings.EMBEDPORTAL_DOCS_DIR = docs
    EmbeddingPipelineOperationsDocGenerator(docs).write()
    monkeypatch.setattr(architecture, "find_kubectl", lambda: None)

    assert [s.path for s in freshness.check_pages(docs) if s.status == Freshness.STALE] == []
    status = {s.path: s for s in freshness.check_pages(docs)}["reference/architecture.md"]
    assert status.status == Freshness.FRESH and "kubectl not found" in status.reason

    # A page committed without the overlay is still compared: kubectl missing here changes nothing.
    EmbeddingPipelineOperationsDocGenerator(docs).write()
    page = docs / "reference" / "architecture.md"
    page.write_text(page.read_text().replace("## Local topology", "## Local topology (edited)"))
    assert [s.path for s in freshness.check_pages(docs) if s.status == Freshness.STALE] == ["reference/architecture.md"]


def test_a_registry_entry_reads_the_same_in_every_layout_the_formatter_writes() -> None:
    one_line = 'Setting("X", "int", 3, "Tries.")'
    hugged = 'Setting(\n    "X", "int", 3, "Tries."\n)'
    exploded = 'Setting(\n    "X",\n    "int",\n    3,\n    "Tries.",\n)'
    assert {freshness.setting_entry(text, "X") for text in (one_line, hugged, exploded)} == {one_line}
    assert freshness.setting_entry(one_line.replace("3", "4"), "X") != one_line
