"""The code version: a deployment's setting, a checkout's HEAD, or what the image build baked in."""

from __future__ import annotations

import subprocess

import pytest

from embedportal import version


@pytest.fixture(autouse=True)
def fresh_cache():
    version.code_version.cache_clear()
    yield
    version.code_version.cache_clear()


def test_a_checkout_reports_its_head(settings):
    settings.EMBEDPORTAL_CODE_VERSION = ""
    head = subprocess.run(["git", "-C", str(settings.BASE_DIR), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert version.code_version() == head.stdout.strip()
    settings.EMBEDPORTAL_CODE_VERSION = "registry.example.com/embedportal:0.1.0"
    version.code_version.cache_clear()
    assert version.code_version() == "registry.example.com/embedportal:0.1.0"


def test_an_image_without_git_reports_the_commit_its_build_wrote(settings, tmp_path):
    # The image's source tree: no .git (dropped after the docs build), a code-version file instead.
    settings.EMBEDPORTAL_CODE_VERSION, settings.BASE_DIR = "", tmp_path
    assert version.code_version() == "unknown"
    (tmp_path / version.VERSION_FILE).write_text("0123abcd" * 5 + "\n")
    version.code_version.cache_clear()
    assert version.code_version() == "0123abcd" * 5


@pytest.mark.django_db
def test_readyz_tells_staff_which_code_answers(client, admin_client, settings):
    settings.EMBEDPORTAL_CODE_VERSION = "v-ready"
    body = admin_client.get("/readyz").json()
    assert body["ok"] and body["details"]["code_version"] == "v-ready"
    assert "v-ready" not in client.get("/readyz").content.decode()  # anonymous callers: pass or fail only
