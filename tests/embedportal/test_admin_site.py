"""The admin names the product, on the login page and inside."""

from __future__ import annotations

import re

from django.test import Client


def test_admin_index_says_embedportal(admin_client: Client) -> None:
    page = admin_client.get("/admin/").content.decode()
    assert re.search(r"<title>Operator console \| embedportal</title>", page), page[:500]
    assert re.search(r'<div id="site-name"><a href="/admin/">embedportal</a></div>', page)
    assert "Django administration" not in page and "Django site admin" not in page


def test_admin_login_page_says_embedportal(client: Client) -> None:
    page = client.get("/admin/login/").content.decode()
    assert "<title>Log in | embedportal</title>" in page
    assert "Django administration" not in page


def test_the_host_name_leads_to_the_console_and_view_site_to_the_docs(admin_client: Client, client: Client) -> None:
    assert client.get("/").headers["Location"] == "/admin/"
    login = client.get("/", follow=True)
    assert login.redirect_chain[-1][0].startswith("/admin/login/"), login.redirect_chain
    page = admin_client.get("/admin/").content.decode()
    assert '<a href="/docs/">View site</a>' in page, page[:2000]


def test_a_login_with_a_username_longer_than_any_users_is_refused_not_a_500(client: Client, db) -> None:
    """The form passed it on (its max_length only sized the input box), and django-axes' failure record
    has 255 characters for it: anyone could make the login page answer 500."""
    response = client.post("/admin/login/?next=/admin/", {"username": "u" * 300, "password": "x"})
    assert response.status_code == 200
    assert "Ensure this value has at most 150 characters (it has 300)." in response.content.decode()


def test_the_console_shows_times_with_their_timezone(admin_client: Client) -> None:
    """Django's English format ("Dec. 6, 2026, 8:45 p.m.") named no timezone on any list or page."""
    from django.utils import timezone

    from testing.models import TestRun

    now = timezone.now()
    run = TestRun.objects.create(trigger="cli", status="passed", started_at=now, heartbeat_at=now)
    shown = f"{now:%Y-%m-%d %H:%M:%S} UTC"
    assert shown in admin_client.get("/admin/testing/testrun/").content.decode()
    assert shown in admin_client.get(f"/admin/testing/testrun/{run.pk}/change/").content.decode()
