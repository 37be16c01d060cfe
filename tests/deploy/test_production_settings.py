"""The production overlay's settings pass Django's deployment checks; `make run`'s plain http stays."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.deploy.render import ROOT, one, render_overlay


def production_config() -> dict[str, str]:
    return one(render_overlay("production"), "ConfigMap", "embedportal-config")["data"]


def test_check_deploy_reports_nothing_with_the_production_overlays_settings():
    env = {**os.environ, **production_config()}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    print(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_without_them_check_deploy_names_the_https_settings_the_overlay_sets():
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_SECURE_")}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = {code for code in ("W004", "W008", "W012", "W016") if f"security.{code}" in result.stderr + result.stdout}
    assert found == {"W004", "W008", "W012", "W016"}
    assert {"DJANGO_SECURE_SSL_REDIRECT", "DJANGO_SECURE_HSTS_SECONDS", "DJANGO_SECURE_COOKIES"} <= set(
        production_config()
    )


@pytest.mark.django_db
def test_behind_the_ingress_http_is_redirected_but_probes_are_not_and_https_is_served(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    redirected = client.get("/admin/login/")
    assert redirected.status_code == 301 and redirected["Location"].startswith("https://")
    for probe in ("/healthz", "/readyz"):
        assert client.get(probe).status_code == 200, probe
    served = client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="https")
    assert served.status_code == 200 and served.cookies["csrftoken"]["secure"]


@pytest.mark.django_db
def test_the_defaults_serve_plain_http_on_localhost_with_ordinary_cookies(client):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert not response.cookies["csrftoken"]["secure"]
    assert "Strict-Transport-Security" not in response
